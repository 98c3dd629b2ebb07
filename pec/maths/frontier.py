"""Which new designs the experts are tested on next (the frontier candidates).

``border`` grows the covered region gradually by testing just outside the experts'
current ellipses; ``frontier`` jumps to the least-owned designs to fill holes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from pec.errors import ConfigError, InputError
from pec.maths.coverage import max_log_density
from pec.maths.design_space import DesignSpace, FloatArray, as_gaussians

logger = logging.getLogger(__name__)

SAMPLING_MODES: tuple[str, ...] = ("border", "frontier", "auto")
EFFECTIVE_MODES: tuple[str, ...] = ("border", "frontier")


def effective_mode(sampling_mode: str, iteration: int, auto_switch_iter: int) -> str:
    """Resolve ``auto`` to ``border`` while iteration < auto_switch_iter, else ``frontier``."""
    if sampling_mode not in SAMPLING_MODES:
        raise ConfigError(
            f"sampling_mode={sampling_mode!r} is unknown; use one of {list(SAMPLING_MODES)}"
        )
    if sampling_mode != "auto":
        return sampling_mode
    return "border" if iteration < auto_switch_iter else "frontier"


@dataclass(frozen=True)
class CandidateSelection:
    """F candidates in selection order (candidate id = row index).

    ``band_count`` is how many came from the border band (always 0 in frontier mode);
    fewer than F means the band ran dry and the rest was filled from the pool.
    """

    designs: FloatArray
    max_log_density: FloatArray
    mode: str
    band_count: int
    pool_size: int


def select_candidates(
    mus: ArrayLike,
    variances: ArrayLike,
    space: DesignSpace,
    *,
    F: int,
    pool_factor: int,
    mode: str,
    border_inner_ld: float = -0.5,
    border_outer_ld: float = -2.5,
    seed: int,
) -> CandidateSelection:
    """Pick F candidates from a seeded uniform pool of pool_factor x F designs."""
    if isinstance(F, bool) or not isinstance(F, int | np.integer) or F < 1:
        raise InputError(f"F={F!r} is invalid; pass an integer >= 1")
    if isinstance(pool_factor, bool) or not isinstance(pool_factor, int | np.integer):
        raise InputError(f"pool_factor={pool_factor!r} is invalid; pass an integer >= 1")
    if pool_factor < 1:
        raise InputError(f"pool_factor={pool_factor!r} is invalid; pass an integer >= 1")
    if mode not in EFFECTIVE_MODES:
        raise ConfigError(
            f"frontier mode {mode!r} is not border/frontier; resolve auto with effective_mode()"
        )
    if not border_outer_ld < border_inner_ld <= 0.0:
        raise ConfigError(
            f"border band ({border_outer_ld}, {border_inner_ld}) is invalid; "
            "need border_outer_ld < border_inner_ld <= 0"
        )
    mu_array, var_array = as_gaussians(mus, variances)
    pool_size = int(F) * int(pool_factor)
    pool = space.sample_uniform(pool_size, np.random.default_rng(seed))
    density = max_log_density(pool, mu_array, var_array)
    by_density = np.argsort(density, kind="stable")  # lowest first, ties by pool index

    if mode == "frontier":
        chosen = by_density[:F]
        band_count = 0
    else:
        in_band = (density > border_outer_ld) & (density < border_inner_ld)
        band_order = by_density[in_band[by_density]]  # outermost (lowest density) first
        rest_order = by_density[~in_band[by_density]]
        band_count = int(min(F, band_order.shape[0]))
        chosen = np.concatenate([band_order[:band_count], rest_order[: F - band_count]])
        if band_count < F:
            logger.info(
                "border band held %d of %d candidates; filled the rest from the pool",
                band_count,
                F,
            )
    return CandidateSelection(
        designs=pool[chosen],
        max_log_density=density[chosen],
        mode=mode,
        band_count=band_count,
        pool_size=pool_size,
    )
