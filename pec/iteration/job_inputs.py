"""What every job of a run is given, and whether a checkpoint a job would load is there.

The backend settings of a job (`job_settings`), the design axes its spec names (`spec_axes`)
and `checkpoint_exists`: shared by the iteration's training and frontier jobs and by the
final evaluation's, the generalist's and the student's. Every training job (an expert, the
trunk, a generalist chunk, a distillation stage) writes its per-environment designs with
`write_samples` and is described by `train_job_spec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pec.jobs.spec import TrainJobSpec
from pec.maths.design_space import AXES, DEFAULT_AXES
from pec.runs.run import Run
from pec.runs.state import PECState
from pec.runs.store.npy import npy_bytes


def job_settings(run: Run, state: PECState) -> dict[str, Any]:
    """Backend settings of a job: the config's `backend_settings`, validated by the backend,
    with the config's `task` as `task.terrain` when set.

    Both backends build the robot from pec's own model, so nothing else is added here.
    """
    return run.config.job_backend_settings


def spec_axes(run: Run) -> list[str] | None:
    """The design axes a job spec names: None for 2-D (the spec as it always was)."""
    axes = run.space.axes
    return None if axes == DEFAULT_AXES else list(axes)


def checkpoint_exists(run: Run, uri: str | None) -> bool:
    """Whether `uri` names an object in the run's store (False for None or another store's)."""
    if uri is None:
        return False
    try:
        return run.store.exists(run.store.key_for_uri(uri))
    except Exception:  # a URI of another store cannot be checked from here
        return False


@dataclass(frozen=True)
class SampleKeys:
    """Where a training job's per-environment designs are: one .npy per design axis."""

    gcr: str
    spcf: str
    leg: str | None  # 3-D runs only


def write_samples(run: Run, directory: str, columns: Sequence[np.ndarray]) -> SampleKeys:
    """Write one column per design axis (gcr, spcf(, leg)) as ``<directory><axis>.npy``."""
    written = [directory + f"{axis}.npy" for axis in AXES[: len(columns)]]
    for key, column in zip(written, columns, strict=True):
        run.store.write_bytes(key, npy_bytes(column))
    return SampleKeys(written[0], written[1], written[2] if len(written) == 3 else None)


def train_job_spec(
    run: Run,
    state: PECState,
    *,
    job_id: int,
    iteration: int,
    samples: SampleKeys,
    start_level: int,
    max_iterations: int,
    num_envs: int,
    seed: int,
    threads: int | None,
    resume: str | None = None,
    role: Literal["expert", "trunk"] = "expert",
    settings: dict[str, Any] | None = None,
    teacher_checkpoint_uris: list[str] | None = None,
    samples_teacher_key: str | None = None,
) -> TrainJobSpec:
    """One training job of this run: what differs between jobs is passed, the rest (backend,
    store, axes, device, backend settings unless `settings` is given, timeout) is the run's."""
    cfg = run.config
    return TrainJobSpec(
        kind="train",
        backend=cfg.backend,
        store=run.store_spec,
        run_name=run.name,
        expert_id=job_id,
        iteration=iteration,
        role=role,
        samples_gcr_key=samples.gcr,
        samples_spcf_key=samples.spcf,
        samples_leg_key=samples.leg,
        axes=spec_axes(run),
        start_level=start_level,
        max_iterations=max_iterations,
        num_envs=num_envs,
        seed=seed,
        device=cfg.effective_device,
        resume_checkpoint_uri=resume,
        settings=job_settings(run, state) if settings is None else settings,
        timeout_s=cfg.train_timeout_h * 3600.0,
        threads=threads,
        teacher_checkpoint_uris=teacher_checkpoint_uris,
        samples_teacher_key=samples_teacher_key,
    )
