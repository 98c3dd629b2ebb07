"""The design inputs of the policy: one fixed normalisation over the design box, for every backend.

The observation's morphology block (one column per design axis) already maps each design
axis onto [-1, 1] over the task's normalisation range. rsl-rl's running observation
normaliser then re-centres those columns on each policy's own training designs: an expert
trained on a narrow region sees them with a standard deviation of a few hundredths, so a
design elsewhere in the box reaches its network many standard deviations out (15-21 for the
transfer matrix's corners). With `ppo.design_inputs: fixed` the trainer pins those columns
of the actor's and critic's normalisers at mean 0 and standard deviation 1 after every
normaliser update, so every policy reads the design through the same box normalisation,
independent of the designs it was trained on. `running` (the default until `fixed` is
measured against it) keeps rsl-rl's behaviour, that of every earlier checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch

from pec.backends.ballu.facts import OBSERVATION_LAYOUT

DESIGN_BLOCK = "morphology"


def design_columns() -> list[int]:
    """Observation columns of the design inputs, one per design axis, from the layout."""
    start = 0
    for name, size in OBSERVATION_LAYOUT:
        if name == DESIGN_BLOCK:
            return list(range(start, start + size))
        start += size
    raise AssertionError(f"the observation layout has no {DESIGN_BLOCK} block")


def pin_design_inputs(*models: Any) -> None:
    """Set the design columns of each model's running normaliser to mean 0, std 1 (in place).

    A model without a running normaliser (`obs_normalization: false`) is left alone.
    """
    columns = design_columns()
    for model in models:
        normaliser: Any = getattr(model, "obs_normalizer", None)
        if not isinstance(getattr(normaliser, "_mean", None), torch.Tensor):
            continue
        with torch.no_grad():
            normaliser._mean[..., columns] = 0.0
            normaliser._var[..., columns] = 1.0
            normaliser._std[..., columns] = 1.0


def design_inputs_pinned(model_state: dict[str, Any]) -> bool:
    """True when a saved actor/critic state reads the design columns as pinned (or has no
    running normaliser at all)."""
    mean = model_state.get("obs_normalizer._mean")
    std = model_state.get("obs_normalizer._std")
    if not isinstance(mean, torch.Tensor) or not isinstance(std, torch.Tensor):
        return True
    columns = design_columns()
    return bool(torch.all(mean[..., columns] == 0.0) and torch.all(std[..., columns] == 1.0))
