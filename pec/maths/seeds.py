"""Deterministic child seeds, one per purpose, derived from the run seed.

The original reused one seed for every expert and iteration, so all training samples were
affine images of the same normal draws. Hashing (run seed, labels) gives each draw its own
stream, and unlike Python's ``hash`` the result is the same on every process and platform.
"""

from __future__ import annotations

import hashlib

import numpy as np

from pec.errors import InputError

SEED_LIMIT: int = 2**31


def _encode(label: object) -> bytes:
    # Type-tag each label so that derive_seed(s, 1) and derive_seed(s, "1") differ.
    if isinstance(label, bool):
        raise InputError(f"seed label {label!r} is a bool; pass a str or int label")
    if isinstance(label, int | np.integer):
        return b"i" + str(int(label)).encode("ascii")
    if isinstance(label, str):
        return b"s" + label.encode("utf-8")
    raise InputError(f"seed label {label!r} has type {type(label).__name__}; pass a str or int")


def derive_seed(base_seed: int, *labels: str | int) -> int:
    """A seed in [0, 2**31) that depends only on the base seed and the ordered labels."""
    if isinstance(base_seed, bool) or not isinstance(base_seed, int | np.integer):
        raise InputError(f"base seed {base_seed!r} is not an integer; pass an int seed")
    digest = hashlib.sha256()
    digest.update(b"pec-seed-v1")
    for part in (int(base_seed), *labels):
        encoded = _encode(part)
        # Length prefix keeps ("ab", "c") and ("a", "bc") apart.
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    return int.from_bytes(digest.digest()[:8], "big") % SEED_LIMIT
