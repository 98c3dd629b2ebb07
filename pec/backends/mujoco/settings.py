"""Typed settings of the MuJoCo BALLU backend: the shared task and PPO models, nothing more."""

from __future__ import annotations

from pydantic import Field

from pec.backends.ballu.settings import BalluTaskSettings, PPOSettings
from pec.runs.safe_io import StrictModel

__all__ = ["BalluTaskSettings", "MujocoSettings", "PPOSettings"]


class MujocoSettings(StrictModel):
    """Everything `TrainRequest.settings` / `EvalRequest.settings` may override."""

    task: BalluTaskSettings = Field(default_factory=BalluTaskSettings)  # type: ignore[arg-type]
    ppo: PPOSettings = Field(default_factory=PPOSettings)  # type: ignore[arg-type]
