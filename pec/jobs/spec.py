"""The job contract as data: what a training or evaluation job needs, and what it returns.

Specs and results are plain JSON so the same job can run in-process, in a subprocess, in a
container or on another machine, and so Prefect can persist results without pickle.
Credentials never appear here: they come from the environment of whoever runs the job.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from pec.errors import ConfigError, one_line
from pec.maths.curriculum import MAX_LEVEL
from pec.runs.job_records import StoreSpec as StoreSpec
from pec.runs.job_records import TrainJobResult as TrainJobResult

# Exit codes of `python -m pec.jobs`, part of the contract every executor relies on.
EXIT_OK = 0
EXIT_JOB_FAILED = 1  # the job failed and said why; its verdict is final
EXIT_BAD_SPEC = 2
EXIT_CRASHED = 3  # unexpected error: an uploaded checkpoint may still be recovered
EXIT_INCOMPLETE = 4  # training stopped before its PPO iterations were done: retry it


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainJobSpec(_Strict):
    """One expert's PPO training at one PEC iteration."""

    kind: Literal["train"] = "train"
    backend: str = Field(min_length=1)
    store: StoreSpec
    run_name: str = Field(min_length=1)
    expert_id: int = Field(ge=0)
    iteration: int = Field(ge=0)
    samples_gcr_key: str = Field(min_length=1)
    samples_spcf_key: str = Field(min_length=1)
    start_level: int = Field(ge=0, le=MAX_LEVEL)
    max_iterations: int = Field(ge=1)
    num_envs: int = Field(ge=1)
    seed: int
    device: str = "cpu"
    resume_checkpoint_uri: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(gt=0)
    threads: int | None = Field(
        default=None, ge=1
    )  # torch/BLAS threads (pec.jobs.threads); None: as is


class EvalJobSpec(_Strict):
    """One expert checkpoint on a list of designs, one environment per design."""

    kind: Literal["eval"] = "eval"
    backend: str = Field(min_length=1)
    store: StoreSpec
    run_name: str = Field(min_length=1)
    expert_id: int = Field(ge=0)
    iteration: int = Field(ge=0)
    checkpoint_uri: str = Field(min_length=1)
    designs: list[tuple[float, float]] = Field(min_length=1)  # [GCR, spcf] pairs
    num_episodes: int = Field(ge=1)
    start_difficulty: int = Field(ge=0, le=MAX_LEVEL)
    score: Literal["final_level", "level_search"] = "final_level"  # see pec.maths.protocols
    search_max_level: int = Field(default=MAX_LEVEL, ge=1, le=MAX_LEVEL)
    seed: int
    device: str = "cpu"
    settings: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(gt=0)
    threads: int | None = Field(
        default=None, ge=1
    )  # torch/BLAS threads (pec.jobs.threads); None: as is
    result_key: str | None = None  # also write the result JSON here when set

    @field_validator("designs")
    @classmethod
    def _finite_designs(cls, designs: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for index, (gcr, spcf) in enumerate(designs):
            if not (math.isfinite(gcr) and math.isfinite(spcf)):
                raise ValueError(f"design {index} is {[gcr, spcf]}: GCR and spcf must be finite")
        return designs


class EvalJobResult(_Strict):
    levels: list[Annotated[int, Field(ge=0, le=MAX_LEVEL)]]  # final level per design, in order
    expert_id: int = Field(ge=0)


JobSpec = Annotated[TrainJobSpec | EvalJobSpec, Field(discriminator="kind")]
JobResult = TrainJobResult | EvalJobResult

_JOB_SPEC_ADAPTER: TypeAdapter[TrainJobSpec | EvalJobSpec] = TypeAdapter(JobSpec)


def parse_job_spec(data: bytes | str | dict[str, Any]) -> TrainJobSpec | EvalJobSpec:
    """Validate a spec from JSON text or a dict; any problem becomes one ConfigError."""
    try:
        raw = json.loads(data) if isinstance(data, bytes | str) else data
        return _JOB_SPEC_ADAPTER.validate_python(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"job spec is not valid JSON ({one_line(exc)}); write it with model_dump_json()"
        ) from exc
    except ValidationError as exc:
        raise ConfigError(f"job spec is invalid: {_one_line(exc)}; fix the named field") from exc


def parse_job_result(
    spec: TrainJobSpec | EvalJobSpec, data: bytes | str
) -> TrainJobResult | EvalJobResult:
    """Read a result written by `python -m pec.jobs` for the given spec."""
    model: type[TrainJobResult] | type[EvalJobResult]
    model = TrainJobResult if isinstance(spec, TrainJobSpec) else EvalJobResult
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise ConfigError(
            f"job result is invalid: {_one_line(exc)}; the job wrote a bad result"
        ) from exc


def _one_line(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "<root>"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
