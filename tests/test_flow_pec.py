"""The `pec` flow under Prefect's test harness, on the embedded MuJoCo backend (tiny budgets).

Proves: two iterations end to end with everything in the store; a failed expert followed by
a Retry of the same flow run re-trains only that expert (the other comes back Cached); a
repeated scheduling of the next iteration creates one flow run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
)
from prefect.client.schemas.objects import FlowRun, State
from prefect.client.schemas.sorting import TaskRunSort
from prefect.context import TaskRunContext
from prefect.flow_engine import run_flow
from prefect.states import Completed, Scheduled

import flows.children
import pec.jobs.executors as executors_module
from flows.__main__ import main as flows_main
from flows.artifacts import artifact_key, experts_table
from flows.children import child_key
from flows.cleanup import stop_run_containers
from flows.expert_flow import pec_expert
from flows.pec_flow import pec_flow, schedule_next_iteration
from flows.storage import result_storage_for
from flows.tasks import expert_cache_key, train_expert
from pec.errors import JobError
from pec.iteration.run_setup import initialise_run
from pec.iteration.training import prepare_training
from pec.jobs.plan import executor_plan
from pec.jobs.run import run_job as real_run_job
from pec.jobs.spec import EvalJobSpec, TrainJobSpec
from pec.runs import layout
from pec.runs.run import make_run, open_run_store, resolve_config
from pec.runs.state import BudgetRecord
from pec.runs.state_io import load_state

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")

pytestmark = pytest.mark.usefixtures("prefect_harness")


# ---------------------------------------------------------------- helpers


def task_runs_of(flow_run_id: uuid.UUID) -> list[tuple[str, str]]:
    """(task-run name, state name) of a flow run, in creation order."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )
    return [(r.name, r.state.name if r.state and r.state.name else "") for r in runs]


def run_id(state: State[Any]) -> uuid.UUID:
    """The flow-run id behind a state returned by `return_state=True`."""
    assert state.state_details.flow_run_id is not None
    return state.state_details.flow_run_id


def get_artifact(key: str) -> Artifact:
    artifact = cast(Artifact | None, Artifact.get(key))
    assert artifact is not None, f"artifact {key} missing"
    return artifact


def read_flow_run(flow_run_id: uuid.UUID) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def retry_flow_run(flow_run_id: uuid.UUID) -> None:
    """What `prefect flow-run retry <id>` (and the UI's Retry) does: same id, run again."""
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Scheduled(message="Retry"), force=True)
        flow_run = client.read_flow_run(flow_run_id)
    run_flow(pec_flow, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")


@pytest.fixture
def job_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int, int]]]:
    """Records every job the in-process executor really runs: (kind, expert, iteration)."""
    calls: list[tuple[str, int, int]] = []
    real = real_run_job

    def recording(spec: TrainJobSpec | EvalJobSpec, on_progress: Any = None) -> Any:
        calls.append((spec.kind, spec.expert_id, spec.iteration))
        return real(spec, on_progress=on_progress)

    monkeypatch.setattr(executors_module, "run_job", recording)
    yield calls


def fail_once(monkeypatch: pytest.MonkeyPatch, kind: str, expert_id: int) -> Callable[[], int]:
    """Make the first (kind, expert) job raise a JobError; returns how often it failed."""
    failures = [0]
    real = real_run_job

    def flaky(spec: TrainJobSpec | EvalJobSpec, on_progress: Any = None) -> Any:
        if spec.kind == kind and spec.expert_id == expert_id and failures[0] == 0:
            failures[0] += 1
            raise JobError(f"injected failure of {kind} expert {expert_id}")
        return real(spec, on_progress=on_progress)

    monkeypatch.setattr(executors_module, "run_job", flaky)
    return lambda: failures[0]


# ---------------------------------------------------------------- end to end


def test_two_iterations_end_to_end_on_mujoco(
    tmp_path: Path, job_calls: list[tuple[str, int, int]]
) -> None:
    store = str(tmp_path / "store")
    first = pec_flow(run_name="e2e", store=store, config=TINY, chain=False, return_state=True)
    second = pec_flow(run_name="e2e", store=store, config=TINY, chain=False, return_state=True)
    summaries = [first.result(), second.result()]

    assert [s["iteration"] for s in summaries] == [0, 1]
    assert summaries[0]["stop_reason"] is None
    assert summaries[1]["stop_reason"] == "reached max_pec_iterations=2"
    assert summaries[1]["experts"] == {"0": "trained", "1": "trained"}
    assert sorted(job_calls) == sorted(
        (kind, k, n) for kind in ("train", "eval") for k in (0, 1) for n in (0, 1)
    )

    # run and task names say run, iteration and expert
    names = [read_flow_run(run_id(s)).name for s in (first, second)]
    assert names == ["pec-e2e-it0", "pec-e2e-it1"]
    assert sorted(task_runs_of(run_id(second))) == [
        ("evaluate-expert-0", "Completed"),
        ("evaluate-expert-1", "Completed"),
        ("train-expert-0", "Completed"),
        ("train-expert-1", "Completed"),
    ]

    # state, checkpoints, scores, plots in the store
    root = tmp_path / "store"
    state_store, _ = open_run_store(store)
    loaded = load_state(state_store, "e2e")
    assert loaded is not None
    state = loaded[0]
    assert state.iteration == 2 and len(state.coverage) == 2
    for k in (0, 1):
        assert state.experts[k].checkpoint == str(root / layout.best_checkpoint_key("e2e", k, 1))
        for n in (0, 1):
            assert (root / layout.best_checkpoint_key("e2e", k, n)).is_file()
            assert (root / layout.train_result_key("e2e", k, n)).is_file()
    for n in (0, 1):
        scores = json.loads((root / layout.scores_key("e2e", n)).read_text())
        assert len(scores["scores"]) == 2 and all(len(row) == 4 for row in scores["scores"])
    for plot in ("initial_state.png", "coverage.png", "iter_1_frontier.png"):
        assert (root / layout.plots_key("e2e", plot)).stat().st_size > 0

    # task results persisted as JSON (never pickle) in the run's store, by cache key
    config_hash = resolve_config(state_store, "e2e", TINY, {}).content_hash()
    record = root / "e2e/prefect-results" / f"e2e/it1/train-0/{config_hash}"
    payload = json.loads(record.read_text())
    assert payload["metadata"]["serializer"]["type"] == "json"
    assert "checkpoint_uri" in payload["result"]

    # artifacts: experts table, progress, summary with coverage and plot links
    table = get_artifact(artifact_key("e2e", "experts"))
    progress = get_artifact(artifact_key("e2e", "progress"))
    summary = get_artifact(artifact_key("e2e", "summary"))
    assert progress.data == 100.0
    assert isinstance(summary.data, str)
    assert f"{state.coverage[-1].coverage:.3f}" in summary.data
    # plots embedded (a browser cannot open store paths), named by their store-relative key
    assert f"`{layout.coverage_plot_key('e2e')}`" in summary.data
    assert str(root) not in summary.data
    assert summary.data.count("](data:image/png;base64,") >= 3
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert isinstance(rows, list)
    assert [row["expert"] for row in rows] == [0, 1]
    for row, expert in zip(rows, state.experts, strict=True):
        assert row["checkpoint"] == layout.best_checkpoint_key("e2e", expert.id, 1)
        assert row["std (GCR, spcf)"] == (
            f"({expert.sigma[0][0] ** 0.5:.3g}, {expert.sigma[1][1] ** 0.5:.3g})"
        )


def test_failed_expert_then_retry_retrains_only_that_expert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = str(tmp_path / "store")
    failures = fail_once(monkeypatch, "train", 1)
    failed = pec_flow(run_name="retry", store=store, config=TINY, chain=False, return_state=True)
    assert failed.is_failed()
    assert failures() == 1
    flow_run_id = run_id(failed)
    # no checkpoint at all for expert 1: no state change, the iteration is still 0
    state_store, _ = open_run_store(store)
    loaded = load_state(state_store, "retry")
    assert loaded is not None and loaded[0].iteration == 0
    assert sorted(task_runs_of(flow_run_id)) == [
        ("train-expert-0", "Completed"),
        ("train-expert-1", "Failed"),
    ]

    calls: list[tuple[str, int, int]] = []
    real = real_run_job

    def recording(spec: TrainJobSpec | EvalJobSpec, on_progress: Any = None) -> Any:
        calls.append((spec.kind, spec.expert_id, spec.iteration))
        return real(spec, on_progress=on_progress)

    monkeypatch.setattr(executors_module, "run_job", recording)
    retry_flow_run(flow_run_id)

    flow_run = read_flow_run(flow_run_id)
    assert flow_run.state is not None and flow_run.state.is_completed()
    assert flow_run.run_count == 2
    assert ("train", 0, 0) not in calls
    assert [c for c in calls if c[0] == "train"] == [("train", 1, 0)]
    runs = task_runs_of(flow_run_id)
    assert runs[2:4] == [("train-expert-0", "Cached"), ("train-expert-1", "Completed")] or runs[
        2:4
    ] == [("train-expert-1", "Completed"), ("train-expert-0", "Cached")]
    loaded = load_state(state_store, "retry")
    assert loaded is not None and loaded[0].iteration == 1


def test_trunk_is_a_cached_task_shown_in_the_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = str(tmp_path / "store")
    overrides = {"trunk_share": 0.5}
    failures = fail_once(monkeypatch, "train", 1)
    failed = pec_flow(
        run_name="tr", store=store, config=TINY, overrides=overrides, chain=False, return_state=True
    )
    assert failed.is_failed() and failures() == 1
    flow_run_id = run_id(failed)
    assert sorted(task_runs_of(flow_run_id)) == [
        ("train-expert-0", "Completed"),
        ("train-expert-1", "Failed"),
        ("train-trunk", "Completed"),
    ]

    calls: list[tuple[str, int, int]] = []

    def recording(spec: TrainJobSpec | EvalJobSpec, on_progress: Any = None) -> Any:
        calls.append((spec.kind, spec.expert_id, spec.iteration))
        return real_run_job(spec, on_progress=on_progress)

    monkeypatch.setattr(executors_module, "run_job", recording)
    retry_flow_run(flow_run_id)
    flow_run = read_flow_run(flow_run_id)
    assert flow_run.state is not None and flow_run.state.is_completed()
    assert [c for c in calls if c[0] == "train"] == [("train", 1, 0)]  # trunk and 0: cached
    assert ("train-trunk", "Cached") in task_runs_of(flow_run_id)
    summary = flow_run.state.result()
    assert isinstance(summary, dict) and summary["trunk"] == "cached"

    state_store, _ = open_run_store(store)
    loaded = load_state(state_store, "tr")
    assert loaded is not None
    state = loaded[0]
    assert state.iteration == 1 and state.trunk is not None and state.trunk.trained
    config_hash = resolve_config(state_store, "tr", TINY, overrides).content_hash()
    assert (tmp_path / "store/tr/prefect-results/tr/it0/trunk" / config_hash).is_file()
    table = get_artifact(artifact_key("tr", "experts"))
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [row["expert"] for row in rows] == [0, 1, "trunk"]
    assert rows[2]["status"] == "cached" and rows[2]["ppo_iterations"] == 2
    assert rows[2]["checkpoint"] == layout.trunk_dir("tr") + "model_last.pt"
    assert [row["ppo_iterations"] for row in rows[:2]] == [1, 1]


def test_repeated_scheduling_of_next_iteration_creates_one_flow_run(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(pec_flow)
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name=f"main-{uuid.uuid4().hex[:6]}",
            entrypoint="flows/pec_flow.py:pec_flow",
        )
        first = client.create_flow_run_from_deployment(
            deployment_id, parameters={"run_name": "chain", "store": store, "config": TINY}
        )
    run_flow(pec_flow, flow_run=first, parameters=first.parameters, return_type="state")
    assert read_flow_run(first.id).state.is_completed()  # type: ignore[union-attr]

    retry_flow_run(first.id)  # re-runs iteration 0's end: schedules iteration 1 again
    again = schedule_next_iteration(
        deployment_id,
        {"run_name": "chain", "store": store, "config": TINY, "overrides": None, "chain": True},
        "chain",
        1,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
    successors = [r for r in runs if r.id != first.id]
    assert len(successors) == 1
    successor = successors[0]
    assert successor.id == again.id
    assert successor.name == "pec-chain-it1"
    assert successor.idempotency_key == "chain/it1"
    assert successor.parameters["iteration"] == 1
    assert successor.parent_task_run_id is None  # detached, not a subflow
    assert successor.state is not None and successor.state.is_scheduled()


# ---------------------------------------------------------------- small pieces


def test_cache_key_names_run_iteration_kind_expert_and_config() -> None:
    spec = {"run_name": "demo", "iteration": 3, "kind": "eval", "expert_id": 2}
    key = expert_cache_key(
        TaskRunContext.model_construct(), {"spec": spec, "config_hash": "abc123"}
    )
    assert key == "demo/it3/eval-2/abc123"


def test_artifact_keys_are_lowercase_dashes() -> None:
    assert artifact_key("My_Run.v2", "experts") == "pec-my-run-v2-experts"


def test_local_results_live_in_the_run_folder(tmp_path: Path) -> None:
    store, spec = open_run_store(str(tmp_path))
    run = make_run(store, spec, "r1", resolve_config(store, "r1", TINY, {}))
    assert result_storage_for(run) == tmp_path / "r1" / "prefect-results"


def test_executor_plan_follows_the_config(tmp_path: Path) -> None:
    store, _ = open_run_store(str(tmp_path))
    config = resolve_config(
        store, "r1", TINY, {"executor": "docker", "docker_image": "pec:cpu", "gpus_per_expert": 1}
    )
    assert executor_plan(config) == {
        "kind": "docker",
        "options": {"image": "pec:cpu", "gpus": 1, "network_mode": None, "user": None},
        "deployment": "pec-expert/gpu",
    }


def test_experts_table_shows_scores_per_expert(tmp_path: Path) -> None:
    store, spec = open_run_store(str(tmp_path))
    run = make_run(store, spec, "r1", resolve_config(store, "r1", TINY, {}))
    state, _, _ = initialise_run(run)
    rows = experts_table(state, {"scores": [[1, 2, 3, 6], None]}, {0: "cached", 1: "failed"})
    assert (rows[0]["score_mean"], rows[0]["score_min"], rows[0]["score_max"]) == (3.0, 1, 6)
    assert rows[0]["status"] == "cached" and rows[1]["score_mean"] is None
    assert rows[1]["designs"] == len(state.experts[1].designs)
    assert "ppo_iterations" not in rows[0]  # no budget recorded: the original's equal split
    wins = BudgetRecord(iteration=0, rule="wins", ppo_iterations=[4, 0], won_counts=[3, 0])
    rows = experts_table(state.model_copy(update={"budgets": [wins]}), None, {0: "trained"})
    assert [(r["ppo_iterations"], r["budget_rule"]) for r in rows] == [(4, "wins"), (0, "wins")]
    assert rows[0]["status"] == "trained" and rows[1]["status"].startswith("not trained")


class _Container:
    def __init__(self, container_id: str) -> None:
        self.id = container_id
        self.stopped_with: int | None = None

    def stop(self, timeout: int) -> None:
        self.stopped_with = timeout


class _Containers:
    def __init__(self, containers: list[_Container]) -> None:
        self.containers = containers
        self.filters: dict[str, Any] | None = None

    def list(self, filters: dict[str, Any]) -> list[_Container]:
        self.filters = filters
        return self.containers


class _DockerClient:
    def __init__(self, containers: list[_Container]) -> None:
        self.containers = _Containers(containers)


def test_cancelled_run_stops_only_its_labelled_containers() -> None:
    containers = [_Container("c1"), _Container("c2")]
    client = _DockerClient(containers)
    assert stop_run_containers("demo", lambda: client) == ["c1", "c2"]
    assert client.containers.filters == {"label": ["pec.job=1", "pec.runs.run=demo"]}
    assert [c.stopped_with for c in containers] == [30, 30]


def test_expert_flow_runs_one_job_and_returns_json(tmp_path: Path) -> None:
    store, spec = open_run_store(str(tmp_path))
    run = make_run(store, spec, "solo", resolve_config(store, "solo", TINY, {}))
    state, _, _ = initialise_run(run)
    job = prepare_training(run, state, 1)
    result = pec_expert(job.model_dump(mode="json"))
    assert result["checkpoint_uri"] == store.uri(layout.best_checkpoint_key("solo", 1, 0))
    assert store.exists(layout.best_checkpoint_key("solo", 1, 0))


def test_deployment_executor_reads_the_child_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """executor: deployment -> one `pec-expert` run per job, awaited as a subflow."""
    store, spec = open_run_store(str(tmp_path))
    run = make_run(
        store, spec, "remote", resolve_config(store, "remote", TINY, {"executor": "deployment"})
    )
    state, _, _ = initialise_run(run)
    job = prepare_training(run, state, 0)
    seen: dict[str, Any] = {}

    def fake_run_deployment(name: str, **kwargs: Any) -> FlowRun:
        seen.update(kwargs, name=name)
        return FlowRun(
            flow_id=uuid.uuid4(),
            name="expert-train-0-remote-it0",
            state=Completed(data={"checkpoint_uri": "s3://b/ckpt.pt", "log_uri": "s3://b/tb/"}),
        )

    monkeypatch.setattr(flows.children, "run_deployment", fake_run_deployment)
    result = train_expert.fn(
        job.model_dump(mode="json"), run.config.content_hash(), executor_plan(run.config)
    )
    assert result["checkpoint_uri"] == "s3://b/ckpt.pt"
    assert seen["name"] == "pec-expert/gpu"
    # started under the job's key, returned at once (the shared watcher waits, not it)
    assert seen["as_subflow"] is True and seen["timeout"] == 0
    assert seen["idempotency_key"] == child_key(job)
    assert seen["parameters"] == {"spec": job.model_dump(mode="json")}


def test_main_job_exits_2_with_one_line_on_a_pec_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = flows_main(["--run_name", "../escape", "--config", TINY, "--store", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run_name '../escape' is invalid") and err.count("\n") == 1
