"""The GCR x spcf box that PEC partitions, and the unit-square view of it.

Distances between designs only mean something once both axes are put on the same scale
(GCR spans ~0.14, spcf ~0.009), so centre placement and routing work in the unit square
and everything else is stored in physical units. Index 0 is always GCR, index 1 spcf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pec.errors import InputError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

DIMENSION_NAMES: tuple[str, str] = ("GCR", "spcf")


def as_points(name: str, points: ArrayLike, *, allow_empty: bool = True) -> FloatArray:
    """Coerce to a finite float (n, 2) array so every PEC function fails early and clearly."""
    array = np.asarray(points, dtype=np.float64)
    if array.ndim == 1 and array.shape[0] == 0:
        array = array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise InputError(
            f"{name} has shape {array.shape}; pass an (n, 2) array of [GCR, spcf] pairs"
        )
    if not allow_empty and array.shape[0] == 0:
        raise InputError(f"{name} is empty; pass at least one [GCR, spcf] pair")
    if not np.all(np.isfinite(array)):
        row = int(np.argwhere(~np.isfinite(array))[0][0])
        raise InputError(f"{name} row {row} is not finite; replace NaN/inf with real values")
    return array


def as_vector(name: str, value: ArrayLike) -> FloatArray:
    """Coerce to a finite float (2,) array ([GCR, spcf])."""
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (2,):
        raise InputError(f"{name} has shape {array.shape}; pass one [GCR, spcf] pair")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} {array.tolist()} is not finite; pass real numbers")
    return array


def as_gaussians(mus: ArrayLike, variances: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validate K expert means and diagonal variances (strictly positive, same K)."""
    mu_array = as_points("mus", mus, allow_empty=False)
    var_array = as_points("variances", variances, allow_empty=False)
    if var_array.shape != mu_array.shape:
        raise InputError(
            f"variances has shape {var_array.shape} but mus has {mu_array.shape}; "
            "pass one [var_GCR, var_spcf] pair per expert"
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
    """The axis-aligned design box: ``gcr`` and ``spcf`` are (lo, hi) with lo < hi."""

    gcr: tuple[float, float]
    spcf: tuple[float, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "gcr", _validate_range("GCR", self.gcr))
        object.__setattr__(self, "spcf", _validate_range("spcf", self.spcf))

    @property
    def lows(self) -> FloatArray:
        return np.array([self.gcr[0], self.spcf[0]], dtype=np.float64)

    @property
    def highs(self) -> FloatArray:
        return np.array([self.gcr[1], self.spcf[1]], dtype=np.float64)

    @property
    def ranges(self) -> FloatArray:
        return self.highs - self.lows

    def normalize(self, points: ArrayLike) -> FloatArray:
        """Physical (n, 2) -> unit square (the box maps to [0, 1]^2)."""
        array = as_points("points", points)
        return (array - self.lows) / self.ranges

    def denormalize(self, unit: ArrayLike) -> FloatArray:
        """Unit square (n, 2) -> physical units."""
        array = as_points("unit points", unit)
        return self.lows + array * self.ranges

    def clip(self, points: ArrayLike) -> FloatArray:
        """Clip each coordinate into the box (PEC clips samples rather than rejecting them)."""
        array = as_points("points", points)
        return np.clip(array, self.lows, self.highs)

    def contains(self, points: ArrayLike) -> BoolArray:
        """Per point: inside the closed box."""
        array = as_points("points", points)
        inside: BoolArray = np.all((array >= self.lows) & (array <= self.highs), axis=1)
        return inside

    def sample_uniform(self, n: int, rng: np.random.Generator) -> FloatArray:
        """n uniform designs in the box, drawn from the caller's generator."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise InputError(f"sample count n={n!r} is invalid; pass an integer >= 0")
        samples: FloatArray = rng.uniform(self.lows, self.highs, size=(int(n), 2))
        return samples
