"""The job contract as data: what a training or evaluation job needs, and what it returns.

Specs and results are plain JSON so the same job can run in-process, in a subprocess, in a
container or on another machine, and so Prefect can persist results without pickle.
Credentials never appear here: they come from the environment of whoever runs the job.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from pec.errors import ConfigError, one_line
from pec.maths.curriculum import MAX_LEVEL
from pec.maths.design_space import AXES, DEFAULT_AXES
from pec.runs import layout
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
    # "trunk": the shared policy iteration 0 forks every expert from (`trunk_share`); it writes
    # under checkpoints/trunk/ and carries expert_id K. Left out of an expert's spec.
    role: Literal["expert", "trunk"] = Field(
        default="expert", exclude_if=lambda value: value == "expert"
    )
    samples_gcr_key: str = Field(min_length=1)
    samples_spcf_key: str = Field(min_length=1)
    # 3-D runs only: leg.npy and the design axes the job varies (pec.maths.design_space.AXES);
    # absent (None) from a 2-D spec, which therefore serialises as it always did.
    samples_leg_key: str | None = Field(
        default=None, min_length=1, exclude_if=lambda value: value is None
    )
    axes: list[str] | None = Field(default=None, exclude_if=lambda value: value is None)
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
    # Distillation (`pec distill`): imitate these expert checkpoints instead of running PPO;
    # `samples_teacher_key` holds, per environment, the position in the list of its teacher.
    # Left out of the JSON when unset, so the specs (and cache keys) of PPO jobs are unchanged.
    teacher_checkpoint_uris: list[str] | None = Field(
        default=None, min_length=1, exclude_if=lambda value: value is None
    )
    samples_teacher_key: str | None = Field(
        default=None, min_length=1, exclude_if=lambda value: value is None
    )

    @model_validator(mode="after")
    def _teachers_with_index(self) -> TrainJobSpec:
        if (self.teacher_checkpoint_uris is None) != (self.samples_teacher_key is None):
            raise ValueError(
                "teacher_checkpoint_uris and samples_teacher_key go together; set both or neither"
            )
        return self

    @model_validator(mode="after")
    def _leg_samples_match_axes(self) -> TrainJobSpec:
        has_leg = "leg" in job_axes(self.axes)
        if has_leg != (self.samples_leg_key is not None):
            raise ValueError(
                "samples_leg_key must be set exactly when axes name 'leg' (a 3-D run's leg.npy)"
            )
        return self

    @property
    def checkpoint_dir(self) -> str:
        """The store folder this job writes its checkpoints, logs and result to."""
        return layout.job_checkpoint_dir(self.run_name, self.expert_id, self.iteration, self.role)

    @property
    def what(self) -> str:
        """ "expert k" or "the trunk", for messages."""
        return "the trunk" if self.role == "trunk" else f"expert {self.expert_id}"


DesignRow = tuple[float, float] | tuple[float, float, float]
"""One design as a job spec holds it: [GCR, spcf] or [GCR, spcf, leg]."""


def design_row(values: Any) -> DesignRow:
    """A job spec's design from 2 or 3 numbers (a row of a (n, d) array)."""
    floats = [float(v) for v in values]
    if len(floats) == 2:
        return (floats[0], floats[1])
    if len(floats) == 3:
        return (floats[0], floats[1], floats[2])
    raise ValueError(f"a design has 2 or 3 values, got {len(floats)}")


def job_axes(axes: list[str] | None) -> tuple[str, ...]:
    """A spec's design axes: ("gcr", "spcf") when it names none; unknown names refused."""
    if axes is None:
        return DEFAULT_AXES
    if tuple(axes) not in (DEFAULT_AXES, AXES):
        raise ValueError(
            f"axes {axes} are not a design space pec knows; use {list(DEFAULT_AXES)} or "
            f"{list(AXES)}"
        )
    return tuple(axes)


class EvalJobSpec(_Strict):
    """One expert checkpoint on a list of designs, one environment per design."""

    kind: Literal["eval"] = "eval"
    backend: str = Field(min_length=1)
    store: StoreSpec
    run_name: str = Field(min_length=1)
    expert_id: int = Field(ge=0)
    iteration: int = Field(ge=0)
    checkpoint_uri: str = Field(min_length=1)
    # [GCR, spcf] pairs, or [GCR, spcf, leg] triples when axes names the leg axis
    designs: list[DesignRow] = Field(min_length=1)
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
    axes: list[str] | None = Field(default=None, exclude_if=lambda value: value is None)

    @field_validator("designs")
    @classmethod
    def _finite_designs(cls, designs: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
        for index, design in enumerate(designs):
            if not all(math.isfinite(v) for v in design):
                names = "GCR and spcf" if len(design) == 2 else "GCR, spcf and leg"
                raise ValueError(f"design {index} is {list(design)}: {names} must be finite")
        return designs

    @model_validator(mode="after")
    def _designs_match_axes(self) -> EvalJobSpec:
        axes = job_axes(self.axes)
        wrong = [i for i, d in enumerate(self.designs) if len(d) != len(axes)]
        if wrong:
            raise ValueError(
                f"designs[{wrong[0]}] has {len(self.designs[wrong[0]])} values but the job's axes "
                f"are {list(axes)}; give one value per axis"
            )
        return self


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
