"""Numpy arrays as `.npy` bytes: how samples travel through a store (never pickled)."""

from __future__ import annotations

import io

import numpy as np


def npy_bytes(array: np.ndarray) -> bytes:
    """The `.npy` file content of `array` (allow_pickle=False: plain numeric data only)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    """The array in `.npy` bytes; refuses pickled object arrays."""
    return np.asarray(np.load(io.BytesIO(data), allow_pickle=False))
