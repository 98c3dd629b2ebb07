"""Simulator backends. Each implements the train/evaluate contract in `pec.backends.base`."""
