"""A backend says what its preflight checks through the backend contract (`check_host`).

The real path (Isaac Lab asked for CUDA on a CPU machine, refused by `pec run` before the
state is written) is tests/test_isaaclab_training.py; here: every backend implements the
check, and the generic preflight asks the run's backend exactly when its jobs run here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pec.backends.registry import BACKEND_NAMES, get_backend
from pec.backends.zero_cost import ZeroCostBackend
from pec.errors import ConfigError
from pec.iteration import run_setup
from pec.iteration.run_setup import initialise_run, preflight
from pec.runs.config import load_config
from pec.runs.job_records import StoreSpec
from pec.runs.run import make_run
from pec.runs.store import LocalStore

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_every_backend_declares_its_host_check(name: str) -> None:
    backend = get_backend(name)
    assert callable(backend.check_host)
    if name == "mujoco":
        backend.check_host({}, "cpu")  # nothing to install: never refuses


class _Refusing(ZeroCostBackend):
    """Records what the preflight asked and refuses, as a backend missing its extra does."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[dict[str, object], str]] = []

    def check_host(self, settings: dict[str, object], device: str) -> None:
        self.asked.append((settings, device))
        raise ConfigError("backend 'x' needs its extra here; install it")


@pytest.mark.parametrize(
    ("executor", "asked"), [("inprocess", 1), ("subprocess", 1), ("docker", 0)]
)
def test_preflight_asks_the_runs_backend_when_its_jobs_run_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str, asked: int
) -> None:
    backend = _Refusing()
    monkeypatch.setattr(run_setup, "get_backend", lambda name: backend)
    overrides: dict[str, object] = {"executor": executor}
    if executor == "docker":
        overrides["docker_image"] = "pec:cpu"
    config = load_config(TINY, overrides)
    store = LocalStore(tmp_path)
    run = make_run(store, StoreSpec(location=str(tmp_path)), "pre", config)
    state, _, _ = initialise_run(run)
    if asked:
        with pytest.raises(ConfigError, match="needs its extra"):
            preflight(run, state)
        assert backend.asked == [(dict(config.backend_settings), config.effective_device)]
    else:
        preflight(run, state)  # the jobs run in containers: checked there
        assert backend.asked == []
