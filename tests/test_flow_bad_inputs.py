"""The bad-input catalogue, extended to flow and deployment parameters and to a run's files.

Each case starts from a real run after one tiny iteration (checkpoints, scores, state),
breaks one thing, and runs iteration 1 through the flow (`pec_flow(...)`), through a
deployment's flow run executed the way a worker executes it, or through `pec run`. Each
must fail with one clear message naming the culprit, and leave every byte of the store
as it was.
"""

from __future__ import annotations

import json
import math
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.flow_engine import run_flow

from flows.pec_flow import pec_flow
from pec.iteration.driver import run_iteration
from pec.iteration.run_setup import initialise_run
from pec.jobs.executors import InProcessExecutor
from pec.jobs.runner import LocalJobRunner
from pec.presentation.cli import main as cli_main
from pec.presentation.visualize import render_all_soft
from pec.runs.config import load_config
from pec.runs.job_records import StoreSpec
from pec.runs.run import make_run, write_effective_config
from pec.runs.store import LocalStore

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")
RUN = "bad"
CKPT = f"{RUN}/checkpoints/expert_1/iter_0/model_best.pt"
SCORES = f"{RUN}/frontier_evals/iter_0/scores.json"

pytestmark = pytest.mark.usefixtures("prefect_harness")


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def after_one_iteration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bad-seed") / "store"
    root.mkdir()
    store = LocalStore(root)
    run = make_run(store, StoreSpec(location=str(root)), RUN, load_config(TINY))
    initialise_run(run)
    write_effective_config(run)
    run_iteration(run, LocalJobRunner(InProcessExecutor()), plot=render_all_soft)
    return root


def _truncate(root: Path) -> None:
    path = root / CKPT
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(root: Path) -> None:
    (root / CKPT).write_bytes(b"not a checkpoint at all")


def _pickle_bomb(root: Path) -> None:
    # a plain pickle (not a torch zip archive): must never be unpickled
    (root / CKPT).write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")


class _Callable:
    """Pickles as a call of os.system: what a weights-only load must refuse to run."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return (os.system, ("echo pwned",))


def _callable_checkpoint(root: Path) -> None:
    # a real torch zip archive (passes the zip sniff) whose pickle names os.system
    torch.save({"actor_state_dict": {}, "infos": _Callable()}, root / CKPT)


def _missing(root: Path) -> None:
    (root / CKPT).unlink()


def _nan_scores(root: Path) -> None:
    path = root / SCORES
    data = json.loads(path.read_text())
    data["scores"][0][1] = math.nan
    path.write_text(json.dumps(data))  # json writes NaN, which json.loads reads back


def _broken_state(root: Path) -> None:
    (root / RUN / "pec_state.json").write_text('{"schema_version": 1, "experts": [')


@dataclass(frozen=True)
class Case:
    name: str
    parameters: dict[str, Any]  # flow parameters besides run_name/store/config
    expect: str  # substring of the error
    breaks: Callable[[Path], None] | None = None
    via: str = "flow"  # flow | deployment | cli


CASES = [
    # flow parameters
    Case("unknown override key", {"overrides": {"min_var_scal": 0.1}}, "min_var_scale"),
    Case("override of the wrong type", {"overrides": {"F": "many"}}, "F"),
    Case("K changed mid-run", {"overrides": {"K": 3}}, "K"),
    Case(
        "design space changed mid-run (GCR)",
        {"overrides": {"GCR_range": [0.70, 0.89]}},
        "GCR_range",
    ),
    Case(
        "design space changed mid-run (spcf)",
        {"overrides": {"spcf_range": [0.001, 0.02]}},
        "spcf_range",
    ),
    Case("iteration ahead of the run", {"iteration": 5}, "iteration 5"),
    Case("negative iteration", {"iteration": -1}, "iteration -1"),
    Case("iteration not an integer", {"iteration": "first"}, "iteration"),
    Case("overrides not a mapping", {"overrides": "K=3"}, "overrides"),
    Case("config file missing", {"config": "/nonexistent/pec.yaml"}, "pec.yaml"),
    # the run's files
    Case("missing checkpoint", {}, "does not exist", breaks=_missing),
    Case("truncated checkpoint", {}, "not a readable checkpoint", breaks=_truncate),
    Case("garbage checkpoint", {}, "not a readable checkpoint", breaks=_garbage),
    Case("pickle instead of a checkpoint", {}, "not a readable checkpoint", breaks=_pickle_bomb),
    Case(
        "checkpoint naming a callable",
        {},
        "weights-only load refuses it",
        breaks=_callable_checkpoint,
    ),
    Case("NaN score in the last frontier", {}, "not a finite number", breaks=_nan_scores),
    Case("pec_state.json cut off", {}, "pec_state.json", breaks=_broken_state),
    # deployment parameters, run as a worker runs a deployment's flow run
    Case("deployment: unknown parameter", {"bogus": 1}, "bogus", via="deployment"),
    Case("deployment: chain not a bool", {"chain": "sometimes"}, "chain", via="deployment"),
    Case("deployment: K changed mid-run", {"overrides": {"K": 4}}, "K", via="deployment"),
    Case(
        "deployment: run name escaping its prefix",
        {"run_name": "../other"},
        "run_name",
        via="deployment",
    ),
    # the same file problems through `pec run`
    Case("cli: missing checkpoint", {}, "does not exist", breaks=_missing, via="cli"),
    Case("cli: corrupt checkpoint", {}, "not a readable checkpoint", breaks=_garbage, via="cli"),
    Case("cli: NaN score", {}, "not a finite number", breaks=_nan_scores, via="cli"),
    Case(
        "cli: checkpoint naming a callable",
        {},
        "weights-only load refuses it",
        breaks=_callable_checkpoint,
        via="cli",
    ),
]


def test_catalogue_covers_twenty_cases() -> None:
    assert len(CASES) >= 20


def _run_deployment_flow_run(parameters: dict[str, Any]) -> str:
    """Create a flow run of a deployment and execute it like a process worker does."""
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(pec_flow)
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name=f"bad-{uuid.uuid4().hex[:6]}",
            entrypoint="flows/pec_flow.py:pec_flow",
        )
        flow_run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
    state = run_flow(pec_flow, flow_run=flow_run, parameters=parameters, return_type="state")
    assert state.is_failed(), state
    return _message(state)


def _message(state: State[Any]) -> str:
    try:
        state.result()
    except Exception as exc:  # the message is what is checked
        return f"{type(exc).__name__}: {exc}"
    return str(state.message)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_clearly_before_any_write(
    case: Case,
    after_one_iteration: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path / "store"
    shutil.copytree(after_one_iteration, root)
    for path in root.rglob("*.json"):  # local URIs are absolute: point them at the copy
        path.write_text(path.read_text().replace(str(after_one_iteration), str(root)))
    if case.breaks is not None:
        case.breaks(root)
    before = snapshot(root)
    parameters: dict[str, Any] = {"run_name": RUN, "store": str(root), "chain": False}
    parameters.update(case.parameters)

    if case.via == "cli":
        capsys.readouterr()
        code = cli_main(["run", "--run_name", RUN, "--store", str(root)])
        message = capsys.readouterr().err.strip()
        assert code == 2, message
        assert len(message.splitlines()) == 1
    elif case.via == "deployment":
        message = _run_deployment_flow_run(parameters)
    else:
        state = cast(State[Any], pec_flow(**parameters, return_state=True))
        assert state.is_failed(), state
        message = _message(state)

    assert case.expect in message, message
    first_line = message.splitlines()[0]
    assert len(first_line) < 600, first_line
    assert snapshot(root) == before


def test_a_new_run_refused_before_its_first_write_leaves_nothing(tmp_path: Path) -> None:
    """The driver's checks of a new run (here: an iteration it has not reached) come before
    its state is written, so the store stays empty (the flow and `pec run` start this way)."""
    from pec.errors import StateError
    from pec.iteration.driver import start_run

    run = make_run(
        LocalStore(tmp_path), StoreSpec(location=str(tmp_path)), "fresh", load_config(TINY)
    )
    with pytest.raises(StateError, match="iteration 2: run 'fresh' is at iteration 0"):
        start_run(run, iteration=2, plot=render_all_soft)
    assert list(tmp_path.iterdir()) == []
    state, _, iteration = start_run(
        run, plot=render_all_soft
    )  # the same run, asked for what it can do, starts
    assert iteration == 0 and state.iteration == 0
    assert (tmp_path / "fresh" / "pec_state.json").is_file()
