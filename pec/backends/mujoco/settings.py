"""Typed settings of the MuJoCo BALLU backend: the shared task and PPO models, nothing more."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from pec.backends.ballu.settings import BalluTaskSettings, PPOSettings
from pec.runs.safe_io import reject_booleans

__all__ = ["BalluTaskSettings", "MujocoSettings", "PPOSettings"]


class MujocoSettings(BaseModel):
    """Everything `TrainRequest.settings` / `EvalRequest.settings` may override."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        return reject_booleans(cls, value, info)

    task: BalluTaskSettings = Field(default_factory=BalluTaskSettings)  # type: ignore[arg-type]
    ppo: PPOSettings = Field(default_factory=PPOSettings)  # type: ignore[arg-type]
