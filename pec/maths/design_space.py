"""The design box PEC partitions (GCR x spcf, optionally x leg length), and its unit view.

Distances between designs only mean something once every axis is put on the same scale
(GCR spans ~0.14, spcf ~0.009, leg ~0.28 m), so centre placement and routing work in the
unit cube and everything else is stored in physical units. A design space is an ordered
tuple of named axes: index 0 is always GCR, index 1 spcf, index 2 (3-D runs only) the leg
length in metres (femur = tibia = leg, as in the original study's 3-D version).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pec.errors import InputError

FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

DIMENSION_NAMES: tuple[str, str] = ("GCR", "spcf")
"""The state's and designs files' key of each axis of a 2-D space, in column order."""
AXES: tuple[str, str, str] = ("gcr", "spcf", "leg")
"""Every design axis pec knows, in column order; what a backend is told and may refuse.

The one definition: the backends (`design_axes`, `pec.backends.registry`), job specs and
configs import it from here."""
DEFAULT_AXES: tuple[str, str] = ("gcr", "spcf")
"""The axes every design space has (a 2-D run's), and every backend must simulate."""
AXIS_KEYS: dict[str, str] = {"gcr": "GCR", "spcf": "spcf", "leg": "leg"}
"""Axis name -> its key in pec_state.json's design_space, designs files and candidates."""
DEFAULT_LEG_RANGE: tuple[float, float] = (0.20, 0.48)
"""Leg length range of the original's 3-D configs (metres, femur = tibia = leg)."""
DIMS: tuple[int, int] = (2, 3)


def _row_words(dim: int | None) -> tuple[str, str]:
    """("[GCR, spcf] pairs", "[GCR, spcf] pair") for d = 2, triples for d = 3."""
    if dim == 3:
        return "[GCR, spcf, leg] triples", "[GCR, spcf, leg] triple"
    return "[GCR, spcf] pairs", "[GCR, spcf] pair"


def as_points(
    name: str, points: ArrayLike, *, allow_empty: bool = True, dim: int | None = 2
) -> FloatArray:
    """Coerce to a finite float (n, d) array so every PEC function fails early and clearly.

    ``dim`` is the number of axes the caller's space has (2 or 3); None accepts either.
    """
    array = np.asarray(points, dtype=np.float64)
    if array.ndim == 1 and array.shape[0] == 0:
        array = array.reshape(0, 2 if dim is None else dim)
    ok_dims = DIMS if dim is None else (dim,)
    if array.ndim != 2 or array.shape[1] not in ok_dims:
        if dim is None or dim == 2:
            what = f"an (n, 2) array of {_row_words(2)[0]}"
            if dim is None:
                what += f" or an (n, 3) array of {_row_words(3)[0]}"
        else:
            what = f"an (n, {dim}) array of {_row_words(dim)[0]}"
        raise InputError(f"{name} has shape {array.shape}; pass {what}")
    if not allow_empty and array.shape[0] == 0:
        raise InputError(f"{name} is empty; pass at least one {_row_words(array.shape[1])[1]}")
    if not np.all(np.isfinite(array)):
        row = int(np.argwhere(~np.isfinite(array))[0][0])
        raise InputError(f"{name} row {row} is not finite; replace NaN/inf with real values")
    return array


def as_vector(name: str, value: ArrayLike, dim: int = 2) -> FloatArray:
    """Coerce to a finite float (d,) array ([GCR, spcf] or [GCR, spcf, leg])."""
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (dim,):
        raise InputError(f"{name} has shape {array.shape}; pass one {_row_words(dim)[1]}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} {array.tolist()} is not finite; pass real numbers")
    return array


def as_gaussians(mus: ArrayLike, variances: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validate K expert means and diagonal variances (strictly positive, same K and d)."""
    mu_array = as_points("mus", mus, allow_empty=False, dim=None)
    var_array = as_points("variances", variances, allow_empty=False, dim=None)
    if var_array.shape != mu_array.shape:
        names = "[var_GCR, var_spcf] pair" if mu_array.shape[1] == 2 else "variance per axis"
        raise InputError(
            f"variances has shape {var_array.shape} but mus has {mu_array.shape}; "
            f"pass one {names} per expert"
        )
    if np.any(var_array <= 0.0):
        expert = int(np.argwhere(var_array <= 0.0)[0][0])
        raise InputError(
            f"variances of expert {expert} are {var_array[expert].tolist()}; "
            "variances must be > 0 (apply the variance floor)"
        )
    return mu_array, var_array


def _validate_range(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = value
        lo_f, hi_f = float(lo), float(hi)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} range {value!r} is not a pair of numbers; use [lo, hi]") from exc
    if not (math.isfinite(lo_f) and math.isfinite(hi_f)):
        raise InputError(f"{name} range {value!r} is not finite; use finite [lo, hi]")
    if not lo_f < hi_f:
        raise InputError(f"{name} range {value!r} needs lo < hi; swap or widen the bounds")
    return lo_f, hi_f


@dataclass(frozen=True)
class DesignSpace:
    """The axis-aligned design box: each axis is (lo, hi) with lo < hi; ``leg`` None = 2-D."""

    gcr: tuple[float, float]
    spcf: tuple[float, float]
    leg: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "gcr", _validate_range("GCR", self.gcr))
        object.__setattr__(self, "spcf", _validate_range("spcf", self.spcf))
        if self.leg is not None:
            object.__setattr__(self, "leg", _validate_range("leg", self.leg))

    @staticmethod
    def from_bounds(bounds: Mapping[str, Any]) -> DesignSpace:
        """From a {"GCR": [lo, hi], "spcf": [lo, hi](, "leg": [lo, hi])} mapping (state files)."""
        unknown = sorted(set(bounds) - set(AXIS_KEYS.values()))
        if unknown or "GCR" not in bounds or "spcf" not in bounds:
            raise InputError(
                f"design_space has keys {sorted(bounds)}; it needs 'GCR' and 'spcf' and may "
                "have 'leg'"
            )
        leg = bounds.get("leg")
        return DesignSpace(
            gcr=tuple(bounds["GCR"]),
            spcf=tuple(bounds["spcf"]),
            leg=None if leg is None else tuple(leg),
        )

    @property
    def axes(self) -> tuple[str, ...]:
        """The axis names in column order: ("gcr", "spcf") or ("gcr", "spcf", "leg")."""
        return AXES if self.leg is not None else DEFAULT_AXES

    @property
    def keys(self) -> tuple[str, ...]:
        """The axes' keys in state and designs files: ("GCR", "spcf"(, "leg"))."""
        return tuple(AXIS_KEYS[a] for a in self.axes)

    @property
    def dim(self) -> int:
        return len(self.axes)

    @property
    def bounds(self) -> list[tuple[float, float]]:
        """(lo, hi) per axis in column order."""
        return [self.gcr, self.spcf] + ([self.leg] if self.leg is not None else [])

    def as_mapping(self) -> dict[str, list[float]]:
        """{"GCR": [lo, hi], "spcf": [lo, hi](, "leg": [lo, hi])}, as the state stores it."""
        return {key: list(b) for key, b in zip(self.keys, self.bounds, strict=True)}

    def describe(self) -> str:
        """'GCR [lo, hi] x spcf [lo, hi](x leg [lo, hi])' for messages."""
        return " x ".join(f"{k} {list(b)}" for k, b in zip(self.keys, self.bounds, strict=True))

    @property
    def lows(self) -> FloatArray:
        return np.array([b[0] for b in self.bounds], dtype=np.float64)

    @property
    def highs(self) -> FloatArray:
        return np.array([b[1] for b in self.bounds], dtype=np.float64)

    @property
    def ranges(self) -> FloatArray:
        return self.highs - self.lows

    def points(self, name: str, points: ArrayLike, *, allow_empty: bool = True) -> FloatArray:
        """``as_points`` with this space's number of axes."""
        return as_points(name, points, allow_empty=allow_empty, dim=self.dim)

    def normalize(self, points: ArrayLike) -> FloatArray:
        """Physical (n, d) -> unit cube (the box maps to [0, 1]^d)."""
        array = self.points("points", points)
        return (array - self.lows) / self.ranges

    def denormalize(self, unit: ArrayLike) -> FloatArray:
        """Unit cube (n, d) -> physical units."""
        array = self.points("unit points", unit)
        return self.lows + array * self.ranges

    def clip(self, points: ArrayLike) -> FloatArray:
        """Clip each coordinate into the box (PEC clips samples rather than rejecting them)."""
        array = self.points("points", points)
        return np.clip(array, self.lows, self.highs)

    def contains(self, points: ArrayLike) -> BoolArray:
        """Per point: inside the closed box."""
        array = self.points("points", points)
        inside: BoolArray = np.all((array >= self.lows) & (array <= self.highs), axis=1)
        return inside

    def sample_uniform(self, n: int, rng: np.random.Generator) -> FloatArray:
        """n uniform designs in the box, drawn from the caller's generator."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise InputError(f"sample count n={n!r} is invalid; pass an integer >= 0")
        samples: FloatArray = rng.uniform(self.lows, self.highs, size=(int(n), self.dim))
        return samples


def axis_columns(points: ArrayLike) -> tuple[Float32Array, ...]:
    """(n, d) designs -> one contiguous float32 array per axis, in column order.

    What a training job's per-environment samples hold (gcr.npy, spcf.npy(, leg.npy)).
    """
    array = as_points("designs", points, dim=None).astype(np.float32)
    return tuple(array[:, a].copy() for a in range(array.shape[1]))


def uniform_design_columns(space: DesignSpace, n: int, seed: int) -> tuple[Float32Array, ...]:
    """n uniform designs over the whole box, one float32 array per axis (gcr, spcf(, leg)).

    The caller seeds it (one ``derive_seed`` label per purpose: trunk, generalist chunk,
    distillation stage); the draw is ``space.sample_uniform(n, np.random.default_rng(seed))``,
    all axes at once, row by row, so the samples of a given seed never change.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"sampling seed {seed!r} is invalid; pass an integer >= 0")
    return axis_columns(space.sample_uniform(n, np.random.default_rng(int(seed))))
