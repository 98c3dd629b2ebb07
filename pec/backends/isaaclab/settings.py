"""Validated settings of the Isaac Lab backend.

They are checked once, at the edge (backend construction and each request's overrides), so
a typo in a config key fails before an expensive Isaac Sim start instead of inside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pec.errors import ConfigError

# The variable Isaac Sim subprocesses read the robot's USD path from. It always comes from
# the run state (`usd_rel_path`), never from free-form env or extra arguments.
USD_ENV_VAR = "BALLU_USD_REL_PATH"

NonEmpty = Annotated[str, Field(min_length=1)]


class IsaacLabSettings(BaseModel):
    """Where Isaac Lab lives in the GPU image and how its scripts are called."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: NonEmpty = "Isaac-Vel-BALLU-Obstacle-v0"  # gym id registered by the BALLU task package
    launcher: list[NonEmpty] = Field(
        default_factory=lambda: ["/workspace/isaaclab/isaaclab.sh", "-p"], min_length=1
    )  # command that runs a script with Isaac Sim's Python
    isaaclab_dir: NonEmpty = "/workspace/isaaclab"  # relative script paths resolve here
    train_script: NonEmpty = "scripts/reinforcement_learning/rsl_rl/train.py"
    eval_script: NonEmpty = "scripts/pec/pec_eval_expert_frontier.py"
    headless: bool = True
    usd_rel_path: NonEmpty | None = None  # from state["usd_rel_path"]; injected as env
    experiment_name: NonEmpty = "ballu_pec"
    run_name: NonEmpty = "pec"  # rsl_rl log sub-folder suffix
    timeout_s: float | None = Field(default=None, gt=0)  # hard wall-clock limit per job
    extra_train_args: list[str] = Field(default_factory=list)
    extra_eval_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)  # extra environment for the subprocess

    @field_validator("env")
    @classmethod
    def _no_manual_usd(cls, value: dict[str, str]) -> dict[str, str]:
        if USD_ENV_VAR in value:
            raise ValueError(f"do not set {USD_ENV_VAR} in env; set usd_rel_path instead")
        return value

    @field_validator("extra_train_args", "extra_eval_args")
    @classmethod
    def _no_reserved_args(cls, value: list[str]) -> list[str]:
        reserved = {"--task", "--num_envs", "--resume_path", "--checkpoint_path", "--headless"}
        clash = sorted(reserved.intersection(a.split("=", 1)[0] for a in value))
        if clash:
            raise ValueError(f"{', '.join(clash)} are set by the backend; remove them")
        return value


def load_settings(
    base: IsaacLabSettings | None = None, overrides: Mapping[str, object] | None = None
) -> IsaacLabSettings:
    """Merge per-request overrides onto the base settings and validate the result."""
    merged: dict[str, object] = (base or IsaacLabSettings()).model_dump()
    merged.update(overrides or {})
    try:
        return IsaacLabSettings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(
            f"isaaclab settings: {field}: {first['msg']} (fix the backend settings in the config)"
        ) from exc
