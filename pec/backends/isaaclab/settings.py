"""Typed settings of the Isaac Lab backend (validated without importing Isaac Lab).

`task` and `ppo` are the shared BALLU models (`pec.backends.ballu.settings`), so a config's
`backend_settings` means the same on both backends; `physics` and `newton` are Isaac Lab's
own. Lanes (`task.lane_spacing`, `task.obstacle_width`) are MuJoCo-only: Isaac Lab lays the
obstacles out in rows; so is `task.physics_block_envs` (Isaac Lab steps all envs at once).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, ValidationError

from pec.backends.ballu.settings import BalluTaskSettings, PPOSettings
from pec.errors import ConfigError
from pec.runs.safe_io import StrictModel


class NewtonSettings(StrictModel):
    """MuJoCo-Warp solver sizes per env (world) and iteration counts."""

    njmax: int = Field(40, ge=1, description="constraint rows per env (limits + contacts)")
    nconmax: int = Field(16, ge=1, description="contacts per env (two feet, ground + box)")
    iterations: int = Field(100, ge=1)
    ls_iterations: int = Field(50, ge=1)


class IsaacLabSettings(StrictModel):
    """Everything `TrainRequest.settings` / `EvalRequest.settings` may set for Isaac Lab."""

    physics: Literal["newton", "physx"] = Field(
        "newton", description="newton: kit-less MuJoCo-Warp (CPU or CUDA); physx: needs Isaac Sim"
    )
    task: BalluTaskSettings = Field(default_factory=BalluTaskSettings)  # type: ignore[arg-type]
    ppo: PPOSettings = Field(default_factory=PPOSettings)  # type: ignore[arg-type]
    newton: NewtonSettings = Field(default_factory=NewtonSettings)  # type: ignore[arg-type]


def load_settings(raw: Mapping[str, object] | None = None) -> IsaacLabSettings:
    """Validate backend settings, turning pydantic's error into a one-line ConfigError."""
    try:
        return IsaacLabSettings.model_validate(dict(raw or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(
            f"isaaclab settings field '{where}': {first['msg']}; fix it in the backend settings"
        ) from exc
