"""What every job of a run is given, and whether a checkpoint a job would load is there.

The backend settings of a job (`job_settings`), the design axes its spec names (`spec_axes`)
and `checkpoint_exists`: shared by the iteration's training and frontier jobs and by the
final evaluation's, the generalist's and the student's.
"""

from __future__ import annotations

from typing import Any

from pec.maths.design_space import DEFAULT_AXES
from pec.runs.run import Run
from pec.runs.state import PECState


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
