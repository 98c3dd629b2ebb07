"""The run configuration: one validated model of every PEC key, loaded once at the edge.

Keys and defaults follow the reference sheet and PEC_DETAILS.md. A YAML file gives the
base, CLI flags or flow parameters override single keys; unknown keys are an error (a
typo must never silently fall back to a default). The effective configuration is written
into the run (`pec_config.yaml`) and its content hash keys the Prefect task cache.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pec.errors import ConfigError

MAX_LEVEL = 74  # 75 obstacle levels, 0..74

ExecutorKind = Literal["inprocess", "subprocess", "docker", "deployment"]


class PECConfig(BaseModel):
    """Every key of a PEC run. Field names are the reference sheet's own."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # Design space and experts
    K: int = Field(3, ge=1, le=64, description="number of experts")
    GCR_range: tuple[float, float] = (0.75, 0.89)
    spcf_range: tuple[float, float] = (0.001, 0.010)
    N_init: int = Field(50, ge=1, description="designs drawn per expert at init")
    sigma_scale: float = Field(0.10, gt=0.0, le=10.0)
    seed: int = Field(0, ge=0, lt=2**31)
    init_seed: int | None = Field(None, ge=0, lt=2**31, description="defaults to seed")
    init_strategy: Literal["grid", "stochastic_fps"] = "stochastic_fps"
    init_pool_size: int = Field(10_000, ge=10)
    lloyd_iterations: int = Field(12, ge=0)
    init_jitter_scale: float = Field(0.0, ge=0.0)
    init_anchor_region: Literal["top_right"] | None = None
    target_init_coverage: float | None = Field(None, gt=0.0, le=1.0)
    centers: list[tuple[float, float]] | None = None
    usd_rel_path: str | None = None

    # Stopping
    max_pec_iterations: int = Field(20, ge=1)
    coverage_target: float = Field(0.95, gt=0.0, le=1.0)

    # Curriculum start
    dl_initial: int = Field(0, ge=0, le=MAX_LEVEL)
    dl_buffer: int = Field(2, ge=0, le=MAX_LEVEL)

    # Training
    backend: Literal["mujoco", "isaaclab"] = "mujoco"
    task: str | None = None
    num_envs: int | None = Field(None, ge=1, description="mujoco: 64, isaaclab: 4096")
    device: str | None = Field(None, description="mujoco: cpu, isaaclab: cuda:0")
    max_iterations_iter0: int = Field(1600, ge=1)
    max_iterations: int = Field(500, ge=1)
    train_timeout_h: float = Field(8.0, gt=0.0)
    eval_timeout_h: float = Field(4.0, gt=0.0)
    backend_settings: dict[str, Any] = Field(
        default_factory=dict, description="backend-specific settings (PPO, task), validated by it"
    )

    # Frontier evaluation
    F: int = Field(100, ge=1)
    pool_factor: int = Field(20, ge=1)
    sampling_mode: Literal["auto", "border", "frontier"] = "auto"
    auto_switch_iter: int = Field(18, ge=0)
    border_inner_ld: float = Field(-0.5, le=0.0)
    border_outer_ld: float = Field(-2.5, le=0.0)
    num_episodes: int = Field(20, ge=1)
    start_difficulty: int = Field(28, ge=0, le=MAX_LEVEL)

    # Refit
    min_var_scale: float = Field(0.01, gt=0.0)
    min_designs: int = Field(2, ge=1)

    # Where experts run
    executor: ExecutorKind = "inprocess"
    expert_deployment: str = "pec-expert/gpu"
    docker_image: str | None = None
    docker_network_mode: str | None = Field(
        None, description="e.g. 'host' to reach an S3 endpoint on the host's loopback"
    )
    docker_user: str | None = Field(None, description="uid[:gid] the job runs as in the container")
    gpus_per_expert: int = Field(0, ge=0)
    max_parallel_experts: int = Field(1, ge=1, description="experts in flight (GPU count)")

    @field_validator("GCR_range", "spcf_range")
    @classmethod
    def _range_ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not (lo < hi):
            raise ValueError(f"must be [lo, hi] with lo < hi, got [{lo}, {hi}]")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> PECConfig:
        if not self.border_outer_ld < self.border_inner_ld:
            raise ValueError(
                "border_outer_ld must be below border_inner_ld "
                f"(got outer {self.border_outer_ld}, inner {self.border_inner_ld})"
            )
        if self.centers is not None:
            if len(self.centers) != self.K:
                raise ValueError(
                    f"centers must hold K={self.K} [GCR, spcf] pairs, got {len(self.centers)}"
                )
            for i, (gcr, spcf) in enumerate(self.centers):
                if not (self.GCR_range[0] <= gcr <= self.GCR_range[1]) or not (
                    self.spcf_range[0] <= spcf <= self.spcf_range[1]
                ):
                    raise ValueError(
                        f"centers[{i}] = [{gcr}, {spcf}] lies outside the design space"
                    )
        from pec.backends.registry import validate_backend_settings

        validate_backend_settings(self.backend, self.backend_settings)
        if self.executor == "docker" and not self.docker_image:
            raise ValueError("executor 'docker' needs docker_image (the image that runs pec.jobs)")
        return self

    # Backend-dependent defaults: resolved, never guessed at use sites.
    @property
    def effective_num_envs(self) -> int:
        if self.num_envs is not None:
            return self.num_envs
        return 64 if self.backend == "mujoco" else 4096

    @property
    def effective_device(self) -> str:
        if self.device is not None:
            return self.device
        return "cpu" if self.backend == "mujoco" else "cuda:0"

    def docker_options(self) -> dict[str, Any]:
        """DockerExecutor keyword arguments for `executor: docker`."""
        return {
            "image": self.docker_image,
            "gpus": self.gpus_per_expert,
            "network_mode": self.docker_network_mode,
            "user": self.docker_user,
        }

    @property
    def effective_init_seed(self) -> int:
        return self.seed if self.init_seed is None else self.init_seed

    def effective(self) -> dict[str, Any]:
        """The configuration with backend defaults filled in, as plain JSON-able data."""
        data = self.model_dump(mode="json")
        data["num_envs"] = self.effective_num_envs
        data["device"] = self.effective_device
        data["init_seed"] = self.effective_init_seed
        return data

    def content_hash(self) -> str:
        """Stable hash of the effective configuration (key order and formatting free)."""
        canonical = json.dumps(self.effective(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.effective(), sort_keys=True)


def _format_validation_error(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "config"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(first["loc"][0]), PECConfig.model_fields, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; remove it"
        return f"{source}: unknown key '{field}'{hint}"
    extra = f" ({len(error.errors()) - 1} more problem(s))" if len(error.errors()) > 1 else ""
    return f"{source}: {field}: {message}; fix this value{extra}"


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` with the value parsed as YAML (so `K=4`, `centers=[[0.8,0.005]]`)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected KEY=VALUE, e.g. K=4")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{item}': the key before '=' is empty")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"override '{item}': value is not valid YAML ({exc.__class__.__name__})"
        ) from None
    return key, value


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"config file '{path}' does not exist; pass an existing YAML file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config file '{path}' cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"config file '{path}' is not valid YAML{where}; fix its syntax"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file '{path}' must hold a mapping of keys, got {type(data).__name__}"
        )
    return data


def build_config(
    base: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    source: str = "config",
) -> PECConfig:
    merged: dict[str, Any] = dict(base or {})
    for key, value in (overrides or {}).items():
        if value is not None:
            merged[key] = value
    try:
        return PECConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: Path | str | None, overrides: Mapping[str, Any] | None = None) -> PECConfig:
    """Load YAML (optional) and apply overrides (None values mean 'not given')."""
    base = read_config_file(Path(path)) if path is not None else {}
    source = f"config '{path}'" if path is not None else "config"
    return build_config(base, overrides, source=source)


def parse_config_yaml(text: str, source: str) -> PECConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"{source} is not valid YAML; fix its syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of keys")
    return build_config(data, source=source)
