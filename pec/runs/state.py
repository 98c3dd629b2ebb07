"""pec_state.json as typed models, with the reference sheet's invariants enforced on load.

The state file is the run's single source of truth and is written by one writer only, so
every invariant (diagonal covariances, absolute checkpoint URIs, append-only designs and
history, ...) is checked when it is read and before it is written: a broken file is
reported as one clear line instead of surfacing later as a wrong plot or a crashed refit.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pec.errors import InputError, StateError
from pec.runs.run_names import validate_run_name
from pec.runs.safe_io import parse_json

SCHEMA_VERSION = 1
# Gaussians narrower or wider than this are not a PEC state but a broken file: their
# densities overflow float64 (a warning storm, then NaN coverage) long before they mean anything.
MIN_STD_FRACTION = 1e-9
MAX_STD_FACTOR = 1e3
DIMENSIONS: tuple[str, str] = ("GCR", "spcf")
OPTIONAL_DIMENSION = "leg"
"""A 3-D run's third axis (leg length, metres); absent from 2-D states."""

FloatArray = NDArray[np.float64]

# strict: a state file is written by pec, so "1", 1.0 or true where an integer belongs (a
# hand edit, another tool) is refused instead of silently coerced.
_MODEL_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def is_absolute_uri(uri: str) -> bool:
    """An absolute local path or an ``s3://bucket/key`` URI (what the state may hold)."""
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        return bool(bucket) and bool(key)
    return os.path.isabs(uri) and "://" not in uri


def _check_uri(name: str, uri: str | None) -> str | None:
    if uri is not None and not is_absolute_uri(uri):
        raise ValueError(
            f"{name} {uri!r} is not absolute; store an absolute path or an s3://bucket/key URI"
        )
    return uri


def _check_mu(mu: list[float]) -> list[float]:
    if len(mu) not in (2, 3):
        raise ValueError(f"mu has {len(mu)} values; it must be one [GCR, spcf] pair")
    return mu


def _check_sigma(sigma: list[list[float]]) -> list[list[float]]:
    """A diagonal d x d covariance (d = 2, or 3 with the leg axis) with positive variances."""
    d = len(sigma)
    if d not in (2, 3) or any(len(row) != d for row in sigma):
        raise ValueError(
            "sigma must be a 2x2 matrix [[var_GCR, 0.0], [0.0, var_spcf]] (3x3 with leg_range)"
        )
    off = [sigma[i][j] for i in range(d) for j in range(d) if i != j]
    if any(v != 0.0 for v in off):
        shown = ", ".join(repr(v) for v in off)
        raise ValueError(
            f"sigma off-diagonal terms are {shown}; PEC covariances are diagonal, set them to 0.0"
        )
    diagonal = [sigma[i][i] for i in range(d)]
    if not all(v > 0.0 for v in diagonal):
        shown = ", ".join(repr(v) for v in diagonal)
        raise ValueError(f"sigma diagonal {shown} must be positive variances")
    return sigma


def _axis_keys(design_space: dict[str, list[float]]) -> tuple[str, ...]:
    """The state's axis keys in column order: GCR, spcf (, leg)."""
    extra = (OPTIONAL_DIMENSION,) if OPTIONAL_DIMENSION in design_space else ()
    return (*DIMENSIONS, *extra)


def _check_pairs(value: Any) -> Any:
    """Give dict-shaped designs a clear message (the original system once stored dicts)."""
    if isinstance(value, list):
        for i, d in enumerate(value):
            if isinstance(d, dict):
                raise ValueError(
                    f"designs[{i}] is a dict {d!r}; designs are [GCR, spcf] pairs, e.g. [0.8, 0.004]"
                )
            if isinstance(d, list | tuple) and len(d) not in (2, 3):
                raise ValueError(f"designs[{i}] has {len(d)} values; it must be a [GCR, spcf] pair")
    return value


class ExpertFailure(BaseModel):
    """A training job that failed; the expert kept ``fallback_checkpoint`` for that iteration."""

    model_config = _MODEL_CONFIG
    iteration: int = Field(ge=0)
    message: str
    fallback_checkpoint: str | None = None

    @field_validator("fallback_checkpoint")
    @classmethod
    def _abs(cls, v: str | None) -> str | None:
        return _check_uri("fallback_checkpoint", v)


class CoverageRecord(BaseModel):
    """Coverage of the design box measured after a refit (or at init)."""

    model_config = _MODEL_CONFIG
    iteration: int = Field(ge=0)
    coverage: float = Field(ge=0.0, le=1.0)


class ExpertState(BaseModel):
    model_config = _MODEL_CONFIG
    id: int = Field(ge=0)
    mu: list[float]
    sigma: list[list[float]]
    designs: list[list[float]]
    trained: bool = False
    checkpoint: str | None = None
    last_checkpoint: str | None = None
    last_trained_pec_iter: int | None = Field(default=None, ge=0)
    failures: list[ExpertFailure] = Field(default_factory=list)

    @field_validator("mu")
    @classmethod
    def _mu(cls, v: list[float]) -> list[float]:
        return _check_mu(v)

    @field_validator("sigma")
    @classmethod
    def _sigma(cls, v: list[list[float]]) -> list[list[float]]:
        return _check_sigma(v)

    @field_validator("designs", mode="before")
    @classmethod
    def _designs(cls, v: Any) -> Any:
        return _check_pairs(v)

    @field_validator("checkpoint", "last_checkpoint")
    @classmethod
    def _abs(cls, v: str | None) -> str | None:
        return _check_uri("checkpoint", v)

    @model_validator(mode="after")
    def _trained_has_checkpoint(self) -> ExpertState:
        if self.trained and self.checkpoint is None:
            raise ValueError(
                f"expert {self.id} is trained but has no checkpoint; set checkpoint or trained=false"
            )
        return self


class ExpertSnapshot(BaseModel):
    """An expert's Gaussian and checkpoint as they were when an iteration's frontier ran."""

    model_config = _MODEL_CONFIG
    id: int = Field(ge=0)
    mu: list[float]
    sigma: list[list[float]]
    checkpoint: str | None = None
    n_designs: int = Field(ge=0)
    dl: int | None = Field(default=None, ge=0, le=74)  # starting level of that training, if any

    @field_validator("mu")
    @classmethod
    def _mu(cls, v: list[float]) -> list[float]:
        return _check_mu(v)

    @field_validator("sigma")
    @classmethod
    def _sigma(cls, v: list[list[float]]) -> list[list[float]]:
        return _check_sigma(v)

    @field_validator("checkpoint")
    @classmethod
    def _abs(cls, v: str | None) -> str | None:
        return _check_uri("checkpoint", v)


class TrunkState(BaseModel):
    """The shared policy iteration 0 trains on the whole box before forking every expert from it
    (`trunk_share` > 0). Its checkpoint is what each expert's iteration-0 training warm-starts
    from; a failure is recorded like an expert's."""

    model_config = _MODEL_CONFIG
    ppo_iterations: int = Field(ge=1)  # planned (pec.maths.budget.trunk_split)
    checkpoint: str | None = None
    trained: bool = False
    failures: list[ExpertFailure] = Field(default_factory=list)

    @field_validator("checkpoint")
    @classmethod
    def _abs(cls, v: str | None) -> str | None:
        return _check_uri("checkpoint", v)

    @model_validator(mode="after")
    def _trained_has_checkpoint(self) -> TrunkState:
        if self.trained and self.checkpoint is None:
            raise ValueError("the trunk is trained but has no checkpoint; set checkpoint")
        return self


class BudgetRecord(BaseModel):
    """The PPO iterations each expert was given at one iteration, and why (`budget_rule`)."""

    model_config = _MODEL_CONFIG
    iteration: int = Field(ge=0)
    rule: str = Field(min_length=1)  # "equal", "wins", or "trunk" (iteration 0 after a trunk)
    ppo_iterations: list[Annotated[int, Field(ge=0)]]  # per expert; 0: gave its budget away
    won_counts: list[Annotated[int, Field(ge=0)]] | None = None  # last iteration's wins


class HistoryEntry(BaseModel):
    model_config = _MODEL_CONFIG
    iteration: int = Field(ge=0)
    experts_snapshot: list[ExpertSnapshot]
    coverage_before: float | None = Field(default=None, ge=0.0, le=1.0)


class PECState(BaseModel):
    model_config = _MODEL_CONFIG
    schema_version: int = SCHEMA_VERSION
    run_name: str
    iteration: int = Field(ge=0)
    usd_rel_path: str | None = None
    design_space: dict[str, list[float]]
    experts: list[ExpertState]
    history: list[HistoryEntry] = Field(default_factory=list)
    init_strategy: str = Field(min_length=1)
    init_seed: int
    init_sigma_scale: float = Field(gt=0.0)
    init_target_coverage: float | None = Field(default=None, gt=0.0, le=1.0)
    init_realized_coverage: float = Field(ge=0.0, le=1.0)
    config_hash: str = Field(min_length=1)
    coverage: list[CoverageRecord] = Field(default_factory=list)
    # Seed of the one Monte-Carlo point set every coverage of this run is measured on (init,
    # refit, stopping); None in runs written before it was recorded (then the config's seed).
    coverage_seed: int | None = Field(default=None, ge=0)
    # Runs without a trunk or budget records leave both out, so their files stay as before.
    trunk: TrunkState | None = Field(default=None, exclude_if=lambda value: value is None)
    budgets: list[BudgetRecord] = Field(default_factory=list, exclude_if=lambda value: not value)

    @field_validator("schema_version")
    @classmethod
    def _schema(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {v} is not supported (this pec reads {SCHEMA_VERSION}); "
                "use the pec version that wrote the run"
            )
        return v

    @field_validator("run_name")
    @classmethod
    def _run_name(cls, v: str) -> str:
        try:
            return validate_run_name(v)
        except InputError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("design_space")
    @classmethod
    def _design_space(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        if set(v) != set(DIMENSIONS) and set(v) != {*DIMENSIONS, OPTIONAL_DIMENSION}:
            raise ValueError(
                f"design_space has keys {sorted(v)}; it must have exactly 'GCR' and 'spcf' "
                "(and 'leg' in a 3-D run)"
            )
        names = _axis_keys(v)
        for name in names:
            bounds = v[name]
            if len(bounds) != 2 or not bounds[0] < bounds[1]:
                raise ValueError(f"design_space.{name} {bounds!r} must be [lo, hi] with lo < hi")
        return {name: list(v[name]) for name in names}

    @model_validator(mode="after")
    def _invariants(self) -> PECState:
        k = len(self.experts)
        if k == 0:
            raise ValueError("experts is empty; a run has at least one expert")
        ids = [e.id for e in self.experts]
        if ids != list(range(k)):
            raise ValueError(f"expert ids are {ids}; they must be 0..{k - 1} in order")
        names = _axis_keys(self.design_space)
        dim = len(names)
        lo = np.array([self.design_space[d][0] for d in names])
        hi = np.array([self.design_space[d][1] for d in names])
        tol = 1e-9 * (hi - lo)
        gaussians = [(f"experts[{e.id}]", e.mu, e.sigma) for e in self.experts] + [
            (f"history iteration {h.iteration} expert {x.id}", x.mu, x.sigma)
            for h in self.history
            for x in h.experts_snapshot
        ]
        for where, centre, sigma in gaussians:
            if len(centre) != dim or len(sigma) != dim:
                raise ValueError(
                    f"{where} has a {len(centre)}-D mu and a {len(sigma)}x{len(sigma)} sigma but "
                    f"design_space has {dim} axes ({', '.join(names)}); restore the file"
                )
        for e in self.experts:
            wrong = [i for i, d in enumerate(e.designs) if len(d) != dim]
            if wrong:
                raise ValueError(
                    f"experts[{e.id}].designs[{wrong[0]}] has {len(e.designs[wrong[0]])} values "
                    f"but design_space has {dim} axes ({', '.join(names)}); restore the file"
                )
        for where, _, sigma in gaussians:
            std = np.sqrt(np.asarray([sigma[i][i] for i in range(dim)], dtype=np.float64))
            if np.any(std < MIN_STD_FRACTION * (hi - lo)) or np.any(
                std > MAX_STD_FACTOR * (hi - lo)
            ):
                raise ValueError(
                    f"{where}.sigma has standard deviations {std.tolist()}; each must lie between "
                    f"{MIN_STD_FRACTION:g} and {MAX_STD_FACTOR:g} times the design box's width "
                    f"{(hi - lo).tolist()}, restore the file"
                )
        for e in self.experts:
            mu = np.asarray(e.mu, dtype=np.float64)
            if np.any((mu < lo - tol) | (mu > hi + tol)):
                raise ValueError(
                    f"experts[{e.id}].mu {e.mu!r} is outside the design space "
                    f"{self.design_space}; a centre lies inside the box, restore the file"
                )
            if e.designs:
                pts = np.asarray(e.designs, dtype=np.float64)
                outside = np.any((pts < lo - tol) | (pts > hi + tol), axis=1)
                if outside.any():
                    i = int(np.argmax(outside))
                    raise ValueError(
                        f"experts[{e.id}].designs[{i}] {e.designs[i]!r} is outside the design "
                        f"space {self.design_space}; clip it to the box"
                    )
            if e.last_trained_pec_iter is not None and e.last_trained_pec_iter > self.iteration:
                raise ValueError(
                    f"experts[{e.id}].last_trained_pec_iter {e.last_trained_pec_iter} is after "
                    f"the current iteration {self.iteration}; it must be <= iteration"
                )
            for f in e.failures:
                if f.iteration > self.iteration:
                    raise ValueError(
                        f"experts[{e.id}].failures iteration {f.iteration} is after the current "
                        f"iteration {self.iteration}"
                    )
        previous = -1
        for h in self.history:
            if h.iteration <= previous:
                raise ValueError(
                    f"history iterations {[x.iteration for x in self.history]} are not strictly "
                    "increasing; history is append-only, one entry per iteration"
                )
            if h.iteration >= self.iteration:
                raise ValueError(
                    f"history has iteration {h.iteration} but only {self.iteration} iterations "
                    "completed; entries must be < iteration"
                )
            previous = h.iteration
            snap_ids = [s.id for s in h.experts_snapshot]
            if snap_ids != list(range(k)):
                raise ValueError(
                    f"history iteration {h.iteration} snapshot ids are {snap_ids}; they must be "
                    f"0..{k - 1} in order"
                )
            for s in h.experts_snapshot:
                n_now = len(self.experts[s.id].designs)
                if s.n_designs > n_now:
                    raise ValueError(
                        f"history iteration {h.iteration} expert {s.id} n_designs {s.n_designs} "
                        f"exceeds its current {n_now} designs; designs are append-only"
                    )
        previous = -1
        for b in self.budgets:
            if b.iteration <= previous or b.iteration > self.iteration:
                raise ValueError(
                    f"budgets iterations {[x.iteration for x in self.budgets]} must be strictly "
                    f"increasing and <= iteration {self.iteration}"
                )
            if len(b.ppo_iterations) != k:
                raise ValueError(
                    f"budgets iteration {b.iteration} has {len(b.ppo_iterations)} entries; it "
                    f"needs one per expert (K={k})"
                )
            previous = b.iteration
        previous = -1
        for c in self.coverage:
            if c.iteration <= previous or c.iteration > self.iteration:
                raise ValueError(
                    f"coverage iterations {[x.iteration for x in self.coverage]} must be strictly "
                    f"increasing and <= iteration {self.iteration}"
                )
            previous = c.iteration
        return self

    @property
    def K(self) -> int:  # K is the paper's name
        return len(self.experts)

    @property
    def dim(self) -> int:
        """Number of design axes: 2 (GCR, spcf) or 3 (GCR, spcf, leg)."""
        return len(self.design_space)

    def expert_mus(self) -> FloatArray:
        """(K, d) centres, column 0 GCR, column 1 spcf (column 2 leg in 3-D)."""
        return np.array([e.mu for e in self.experts], dtype=np.float64).reshape(-1, self.dim)

    def expert_variances(self) -> FloatArray:
        """(K, d) diagonal variances (the state stores variances, not standard deviations)."""
        d = self.dim
        return np.array(
            [[e.sigma[i][i] for i in range(d)] for e in self.experts], dtype=np.float64
        ).reshape(-1, d)

    def designs_array(self, k: int) -> FloatArray:
        """(n, d) designs of expert ``k``; shape (0, d) when it has none."""
        if not 0 <= k < len(self.experts):
            raise StateError(f"expert id {k} does not exist; ids are 0..{len(self.experts) - 1}")
        return np.asarray(self.experts[k].designs, dtype=np.float64).reshape(-1, self.dim)

    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """((GCR lo, hi), (spcf lo, hi))."""
        g, s = self.design_space["GCR"], self.design_space["spcf"]
        return (g[0], g[1]), (s[0], s[1])


def check_successor(old: PECState, new: PECState) -> None:
    """Reject a new state that rewrites what the append-only rules say must stay.

    Catches a writer that started from a stale or foreign state before it overwrites
    the only copy of a run's history.
    """

    def fail(what: str) -> None:
        raise StateError(
            f"new pec_state.json for run {old.run_name!r} {what}; reload the current state and "
            "reapply the change"
        )

    if new.run_name != old.run_name:
        fail(f"changes run_name to {new.run_name!r}")
    if new.iteration < old.iteration:
        fail(f"moves iteration back from {old.iteration} to {new.iteration}")
    if new.K != old.K:
        fail(f"changes the number of experts from {old.K} to {new.K}")
    if new.design_space != old.design_space:
        fail(f"changes design_space from {old.design_space} to {new.design_space}")
    for name in (
        "init_strategy",
        "init_seed",
        "init_sigma_scale",
        "init_realized_coverage",
        "coverage_seed",
    ):
        if getattr(new, name) != getattr(old, name):
            fail(f"changes {name} from {getattr(old, name)!r} to {getattr(new, name)!r}")
    if new.history[: len(old.history)] != old.history:
        if len(new.history) < len(old.history):
            fail(f"shrinks history from {len(old.history)} to {len(new.history)} entries")
        fail("rewrites existing history entries (history is append-only)")
    if new.budgets[: len(old.budgets)] != old.budgets:
        fail("rewrites existing budget records (budgets are append-only)")
    if old.trunk is not None and old.trunk.trained and new.trunk != old.trunk:
        fail("changes the trained trunk (experts were forked from it)")
    if new.coverage[: len(old.coverage)] != old.coverage:
        fail("rewrites existing coverage records (coverage is append-only)")
    for o, n in zip(old.experts, new.experts, strict=True):
        if n.designs[: len(o.designs)] != o.designs:
            if len(n.designs) < len(o.designs):
                fail(f"shrinks experts[{o.id}].designs from {len(o.designs)} to {len(n.designs)}")
            fail(f"rewrites existing experts[{o.id}].designs (designs are append-only)")
        if n.failures[: len(o.failures)] != o.failures:
            fail(f"rewrites existing experts[{o.id}].failures (failures are append-only)")


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown field; remove it (or use the pec version that wrote it)"
        elif kind == "missing":
            msg = "required field is missing; add it"
        parts.append(f"{loc}: {msg}" if loc else msg)
    extra = exc.error_count() - len(parts)
    if extra > 0:
        parts.append(f"and {extra} more problem(s)")
    return "; ".join(parts)


def parse_state(data: bytes, source: str) -> PECState:
    """Decode and validate pec_state.json; every failure is one StateError line naming source."""
    raw = parse_json(data, source, StateError)
    if not isinstance(raw, dict):
        raise StateError(
            f"{source}: top level is {type(raw).__name__}; pec_state.json holds one JSON object"
        )
    try:
        return PECState.model_validate(raw)
    except ValidationError as exc:
        raise StateError(f"{source}: {_format_validation_error(exc)}") from None


def dump_state(state: PECState) -> bytes:
    """Stable, indented JSON (field order fixed by the models; floats round-trip exactly)."""
    payload = state.model_dump(mode="json")
    try:
        text = json.dumps(payload, indent=2, allow_nan=False)
    except ValueError:
        raise StateError(
            f"state of run {state.run_name!r} holds NaN or inf; only finite numbers can be saved"
        ) from None
    return (text + "\n").encode("utf-8")
