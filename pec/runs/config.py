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
from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pec.errors import ConfigError
from pec.maths.curriculum import MAX_LEVEL
from pec.maths.design_space import DesignSpace
from pec.runs.job_records import AUTO_DEVICE
from pec.runs.safe_io import StrictModel, parse_yaml, read_local_file
from pec.runs.threads import job_threads

# Upper bounds on sizes, so a typo (an extra zero or three) is one line, not an out-of-memory
# crash minutes later. Each bound is far above the reference sheet's research settings.
MAX_ENVS = 65_536
"""Environments of one job (training num_envs, or F designs evaluated side by side)."""
MAX_MUJOCO_ENVS = 8_192
"""MuJoCo holds every robot in memory, about 0.5 MiB each (benchmarks/bench_env_throughput)."""
MEMORY_BUDGET_BYTES = 2 * 1024**3
"""Largest temporary array the PEC maths may allocate (pool x K x 2 float64, a few copies)."""
BYTES_PER_POOL_ENTRY = 48
"""Bytes per (design, expert) pair of a pool's log-density: the (n, K, 2) differences and
their squares in float64 (16 B each), plus the (n, K) result."""
MAX_STATE_DESIGNS = 1_000_000
"""Designs the state may hold at init (K x N_init); each costs ~60 B of JSON."""


ExecutorKind = Literal["inprocess", "subprocess", "docker", "deployment"]


class PECConfig(StrictModel):
    """Every key of a PEC run. Field names are the reference sheet's own."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )

    # Design space and experts
    K: int = Field(3, ge=1, le=1024, description="number of experts")
    GCR_range: tuple[float, float] = (0.75, 0.89)
    spcf_range: tuple[float, float] = (0.001, 0.010)
    N_init: int = Field(50, ge=1, le=10_000, description="designs drawn per expert at init")
    sigma_scale: float = Field(0.10, ge=1e-6, le=10.0)
    seed: int = Field(0, ge=0, lt=2**31)
    init_seed: int | None = Field(None, ge=0, lt=2**31, description="defaults to seed")
    init_strategy: Literal["grid", "stochastic_fps"] = "stochastic_fps"
    init_pool_size: int = Field(10_000, ge=10, le=1_000_000)
    lloyd_iterations: int = Field(12, ge=0, le=10_000)
    init_jitter_scale: float = Field(0.0, ge=0.0)
    init_anchor_region: Literal["top_right"] | None = None
    target_init_coverage: float | None = Field(None, gt=0.0, le=1.0)
    centers: list[tuple[float, float] | tuple[float, float, float]] | None = None
    # The third design axis, leg length in metres (femur = tibia = leg): set = a 3-D run
    # (GCR x spcf x leg) as in the original's configs; absent = 2-D, and left out of the
    # effective config so 2-D runs record exactly what they always did.
    leg_range: tuple[float, float] | None = None
    usd_rel_path: str | None = None

    # Stopping
    max_pec_iterations: int = Field(20, ge=1, le=10_000)
    coverage_target: float = Field(0.95, gt=0.0, le=1.0)

    # Curriculum start
    dl_initial: int = Field(0, ge=0, le=MAX_LEVEL)
    dl_buffer: int = Field(2, ge=0, le=MAX_LEVEL)

    # Training
    backend: Literal["mujoco", "isaaclab"] = "mujoco"
    task: Literal["obstacle", "ramp"] | None = Field(
        None,
        description="the BALLU task: obstacle (the default when unset) or ramp; sets "
        "backend_settings.task.terrain",
    )
    num_envs: int | None = Field(None, ge=1, le=MAX_ENVS, description="mujoco: 64, isaaclab: 4096")
    device: str | None = Field(
        None,
        description="mujoco: cpu, isaaclab: auto (cuda:0 where the job runs has CUDA, else cpu)",
    )
    max_iterations_iter0: int = Field(1600, ge=1, le=1_000_000)
    max_iterations: int = Field(500, ge=1, le=1_000_000)
    trunk_share: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of iteration 0's budget (K x max_iterations_iter0 PPO iterations) "
        "spent on one trunk policy over the whole box that every expert then forks from; "
        "0: every expert starts from scratch (the original)",
    )
    budget_rule: Literal["equal", "wins", "proportional"] = Field(
        "equal",
        description="PPO budget per expert after iteration 0: equal (the original), wins (an "
        "expert that won no frontier candidate gives its budget to those that won), or "
        "proportional (the budget split in proportion to the frontier candidates won)",
    )
    train_timeout_h: float = Field(8.0, gt=0.0, le=24 * 366)
    eval_timeout_h: float = Field(4.0, gt=0.0, le=24 * 366)
    backend_settings: dict[str, Any] = Field(
        default_factory=dict, description="backend-specific settings (PPO, task), validated by it"
    )

    # Frontier evaluation
    F: int = Field(100, ge=1, le=MAX_ENVS)
    pool_factor: int = Field(20, ge=1, le=100_000)
    sampling_mode: Literal["auto", "border", "frontier"] = "auto"
    auto_switch_iter: int = Field(18, ge=0, le=10_000)
    border_inner_ld: float = Field(-0.5, le=0.0)
    border_outer_ld: float = Field(-2.5, le=0.0)
    num_episodes: int = Field(20, ge=1, le=100_000)
    start_difficulty: int = Field(28, ge=0, le=MAX_LEVEL)
    score: Literal["final_level", "level_search"] = Field(
        "level_search",
        description="evaluation protocol (pec.maths.protocols): level_search (default), or "
        "final_level, the original's protocol (num_episodes from start_difficulty)",
    )
    search_max_level: int = Field(
        MAX_LEVEL, ge=1, le=MAX_LEVEL, description="level_search: highest level probed (ceiling)"
    )

    # Refit
    min_var_scale: float = Field(0.01, ge=1e-6, le=10.0)
    min_designs: int = Field(2, ge=1, le=1_000_000)

    # Where experts run
    executor: ExecutorKind = "inprocess"
    expert_deployment: str = "pec-expert/gpu"
    docker_image: str | None = None
    docker_network_mode: str | None = Field(
        None, description="e.g. 'host' to reach an S3 endpoint on the host's loopback"
    )
    docker_user: str | None = Field(None, description="uid[:gid] the job runs as in the container")
    gpus_per_expert: int = Field(0, ge=0, le=64)
    max_parallel_experts: int = Field(1, ge=1, le=1024, description="experts in flight (GPU count)")
    threads_per_job: int | None = Field(
        None, ge=1, le=1024, description="torch/BLAS threads per job; default cores // in flight"
    )

    # A job that stopped early (training killed before its PPO iterations were done) or met
    # a store outage is retried once per entry, after that many seconds (Prefect task
    # retries; `pec run` retries an unfinished training at once). Only then does the crash
    # rule keep an unfinished expert's best checkpoint, recorded as partial.
    job_retry_delays_s: list[float] = Field(
        default_factory=lambda: [30.0, 120.0], max_length=10, description="one entry per retry"
    )

    # A second run of the same (run, iteration) while one holds its lease
    duplicate_run: Literal["exit", "wait"] = Field(
        "exit", description="exit at once naming the holder, or wait for it to finish"
    )
    lease_ttl_s: float = Field(
        600.0, ge=2.0, le=86_400.0, description="a crashed holder's lease is taken over after"
    )
    lease_wait_s: float = Field(
        86_400.0, ge=0.0, le=30 * 86_400.0, description="duplicate_run: wait gives up after"
    )

    @field_validator("GCR_range", "spcf_range", "leg_range")
    @classmethod
    def _range_ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is None:
            return value
        lo, hi = value
        if not (lo < hi):
            raise ValueError(f"must be [lo, hi] with lo < hi, got [{lo}, {hi}]")
        return value

    @field_validator("leg_range")
    @classmethod
    def _leg_positive(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] > 0.0:
            raise ValueError(
                f"leg lengths are metres > 0, got [{value[0]}, {value[1]}]; e.g. [0.20, 0.48]"
            )
        return value

    @property
    def design_space(self) -> DesignSpace:
        """The design box: GCR x spcf, x leg when leg_range is set."""
        return DesignSpace(gcr=self.GCR_range, spcf=self.spcf_range, leg=self.leg_range)

    @model_validator(mode="after")
    def _cross_checks(self) -> PECConfig:
        if not self.border_outer_ld < self.border_inner_ld:
            raise ValueError(
                "border_outer_ld must be below border_inner_ld "
                f"(got outer {self.border_outer_ld}, inner {self.border_inner_ld})"
            )
        if self.centers is not None:
            rows = "[GCR, spcf] pairs" if self.leg_range is None else "[GCR, spcf, leg] triples"
            if len(self.centers) != self.K:
                raise ValueError(f"centers must hold K={self.K} {rows}, got {len(self.centers)}")
            space = self.design_space
            for i, centre in enumerate(self.centers):
                if len(centre) != space.dim:
                    raise ValueError(
                        f"centers[{i}] has {len(centre)} values; a {space.dim}-D run "
                        f"({' x '.join(space.keys)}) takes {rows}"
                    )
                if not bool(space.contains([list(centre)])[0]):
                    values = ", ".join(str(v) for v in centre)
                    raise ValueError(f"centers[{i}] = [{values}] lies outside the design space")
        if self.leg_range is not None and self.init_anchor_region is not None:
            raise ValueError(
                f"init_anchor_region {self.init_anchor_region!r} names a corner of the GCR x "
                "spcf square and is not defined for a 3-D run (leg_range set); drop it"
            )
        self._check_memory()
        from pec.backends.registry import validate_backend_settings

        task_settings = self.backend_settings.get("task")
        terrain = task_settings.get("terrain") if isinstance(task_settings, dict) else None
        if self.task is not None and terrain is not None and terrain != self.task:
            raise ValueError(
                f"task: {self.task} contradicts backend_settings.task.terrain: {terrain}; "
                "set one of them"
            )
        validate_backend_settings(self.backend, self.job_backend_settings)
        if self.executor == "docker" and not self.docker_image:
            raise ValueError("executor 'docker' needs docker_image (the image that runs pec.jobs)")
        return self

    @property
    def job_backend_settings(self) -> dict[str, Any]:
        """`backend_settings` as jobs get them: `task` (when set) becomes `task.terrain`."""
        settings = dict(self.backend_settings)
        if self.task is not None:
            task = settings.get("task")
            settings["task"] = {**(task if isinstance(task, dict) else {}), "terrain": self.task}
        return settings

    def _check_memory(self) -> None:
        """Refuse sizes whose arrays would not fit, before anything allocates them."""
        if self.K * self.N_init > MAX_STATE_DESIGNS:
            raise ValueError(
                f"N_init: K x N_init = {self.K * self.N_init:,} designs exceed "
                f"{MAX_STATE_DESIGNS:,}; lower N_init"
            )
        # d axes: the (n, K, d) temporaries grow with d (48 B at d = 2).
        per_entry = (
            BYTES_PER_POOL_ENTRY if self.leg_range is None else BYTES_PER_POOL_ENTRY * 3 // 2
        )
        for name, pool in (
            ("init_pool_size", self.init_pool_size),
            ("pool_factor", self.F * self.pool_factor),
        ):
            need = pool * self.K * per_entry
            if need > MEMORY_BUDGET_BYTES:
                what = "init_pool_size" if name == "init_pool_size" else "F x pool_factor"
                raise ValueError(
                    f"{name}: a pool of {what} = {pool:,} designs x K={self.K} experts needs "
                    f"~{need / 1024**3:.1f} GiB (limit {MEMORY_BUDGET_BYTES / 1024**3:.0f} GiB); "
                    f"lower {name if name == 'init_pool_size' else 'F or pool_factor'}"
                )
        if self.backend == "mujoco":
            for name, envs in (("num_envs", self.effective_num_envs), ("F", self.F)):
                if envs > MAX_MUJOCO_ENVS:
                    raise ValueError(
                        f"{name}: {envs:,} MuJoCo environments in one scene need "
                        f"~{envs / 2048:.0f} GiB; the MuJoCo backend allows {MAX_MUJOCO_ENVS:,}, "
                        "lower it (or use backend isaaclab on a GPU)"
                    )

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
        return "cpu" if self.backend == "mujoco" else AUTO_DEVICE

    def job_threads(self, jobs_in_flight: int) -> int:
        """Threads for each of `jobs_in_flight` parallel jobs (the pec.runs.threads policy)."""

        return job_threads(self.threads_per_job, jobs_in_flight)

    @property
    def experts_in_flight(self) -> int:
        return max(1, min(self.K, self.max_parallel_experts))

    def protocol_record(self) -> dict[str, Any]:
        """The evaluation protocol as recorded in scores.json / summary.json (with its ceiling)."""
        from pec.maths.protocols import describe

        return describe(self.score, self.num_episodes, self.start_difficulty, self.search_max_level)

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
        if data.get("leg_range") is None:
            data.pop("leg_range", None)  # 2-D: the record is what it was before the axis
        return data

    def content_hash(self) -> str:
        """Stable hash of the effective configuration (key order and formatting free)."""
        canonical = json.dumps(self.effective(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.effective(), sort_keys=True)


def _format_validation_error(error: ValidationError, source: str) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(first["loc"][0]), PECConfig.model_fields, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; remove it"
        return f"{source}: unknown key '{field}'{hint}"
    extra = f" ({len(error.errors()) - 1} more problem(s))" if len(error.errors()) > 1 else ""
    if not field:  # a cross-field check: its message starts with the field it names
        return f"{source}: {message}; fix this value{extra}"
    return f"{source}: {field}: {message}; fix this value{extra}"


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` with the value parsed as YAML (so `K=4`, `centers=[[0.8,0.005]]`)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected KEY=VALUE, e.g. K=4")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{item}': the key before '=' is empty")
    shown = item if len(item) <= 60 else item[:57] + "..."
    value = parse_yaml(raw, f"override '{shown}': value", ConfigError)
    return key, value


def read_config_file(path: Path) -> dict[str, Any]:
    source = f"config file '{path}'"
    data = parse_yaml(read_local_file(path, source, ConfigError), source, ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of keys, got {type(data).__name__}")
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
        raise ConfigError(
            _format_validation_error(exc, _blamed_source(exc, overrides, source))
        ) from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _blamed_source(error: ValidationError, overrides: Mapping[str, Any] | None, source: str) -> str:
    """Name the override (`--set KEY=VALUE`, a flag, a flow parameter) that set the bad key."""
    loc = error.errors()[0]["loc"]
    key = str(loc[0]) if loc else ""
    value = (overrides or {}).get(key)
    if value is None:
        return source
    shown = value if isinstance(value, str) else json.dumps(value)
    return f"override {key}={shown}"


def load_config(path: Path | str | None, overrides: Mapping[str, Any] | None = None) -> PECConfig:
    """Load YAML (optional) and apply overrides (None values mean 'not given')."""
    base = read_config_file(Path(path)) if path is not None else {}
    source = f"config '{path}'" if path is not None else "config"
    return build_config(base, overrides, source=source)


def parse_config_yaml(text: str | bytes, source: str) -> PECConfig:
    data = parse_yaml(text, source, ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of keys")
    return build_config(data, source=source)
