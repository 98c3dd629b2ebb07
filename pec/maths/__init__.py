"""The PEC mathematics: design space, initialisation, coverage, frontier, refit, curriculum, routing, seeds.

Pure functions on numpy arrays, deterministic for a given seed; no I/O."""
