"""Expert child flow runs under the Prefect test harness (a real server, no worker).

Proves (issue 21, items 2 and 3): a job's child is started under a stable idempotency key and
adopted, not doubled, while it is Scheduled, Running or Completed; only a child that ended
without success is replaced; one watcher thread polls all children with one query per
interval; the Prefect job runner hands each outcome over as its job ends, not after the batch.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.states import Completed, Failed, Running

from flows.children import ChildWatcher, child_key, start_or_adopt_child
from flows.tasks import PrefectJobRunner
from pec.iteration.run_setup import initialise_run
from pec.iteration.training import prepare_training
from pec.jobs.runner import JobOutcome
from pec.runs.run import make_run, open_run_store, resolve_config

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def expert_deployment(prefect_harness: None) -> str:
    """A `pec-expert` deployment no worker serves: its runs stay where the test puts them."""
    name = f"adopt-{uuid.uuid4().hex[:6]}"
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("pec-expert")
        client.create_deployment(flow_id=flow_id, name=name)
    return f"pec-expert/{name}"


def set_state(flow_run_id: uuid.UUID, state: Any) -> None:
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, state, force=True)


def test_a_job_key_names_run_iteration_kind_and_expert_and_differs_per_job(
    tmp_path: Path,
) -> None:
    store, spec = open_run_store(str(tmp_path))
    run = make_run(store, spec, "keys", resolve_config(store, "keys", TINY, {}))
    state, _, _ = initialise_run(run)
    first, second = (prepare_training(run, state, k) for k in (0, 1))
    key = child_key(first)
    assert key.startswith("pec/keys/it0/train-0/")
    assert child_key(prepare_training(run, state, 0)) == key  # stable across calls
    assert child_key(second).startswith("pec/keys/it0/train-1/")
    changed = first.model_copy(update={"seed": first.seed + 1})
    assert child_key(changed) != key  # a different job never adopts this one's child


def test_a_relaunched_job_adopts_its_child_until_it_fails(expert_deployment: str) -> None:
    key = f"pec/adopt/it0/train-0/{uuid.uuid4().hex[:8]}"
    parameters = {"spec": {"kind": "train"}}
    child = start_or_adopt_child(expert_deployment, parameters, "expert-train-0", key)
    assert child.idempotency_key == key
    assert child.state is not None and child.state.is_scheduled()
    # a retried parent, while the child waits, runs, and after it finished: the same child
    for state in (None, Running(), Completed()):
        if state is not None:
            set_state(child.id, state)
        again = start_or_adopt_child(expert_deployment, parameters, "expert-train-0", key)
        assert again.id == child.id
    # a child that failed is replaced once, and the replacement is adopted from then on
    failed_key = f"pec/adopt/it0/train-1/{uuid.uuid4().hex[:8]}"
    failed = start_or_adopt_child(expert_deployment, parameters, "expert-train-1", failed_key)
    set_state(failed.id, Failed(message="injected"))
    second = start_or_adopt_child(expert_deployment, parameters, "expert-train-1", failed_key)
    assert second.id != failed.id
    assert second.idempotency_key == f"{failed_key}/attempt-2"
    third = start_or_adopt_child(expert_deployment, parameters, "expert-train-1", failed_key)
    assert third.id == second.id


def test_one_watcher_polls_all_children_with_one_query_per_interval(
    expert_deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    interval = 0.2
    monkeypatch.setenv("PEC_CHILD_POLL_S", str(interval))
    children = [
        start_or_adopt_child(
            expert_deployment, {}, f"expert-train-{k}", f"pec/watch/it0/train-{k}/{uuid.uuid4()}"
        )
        for k in range(24)
    ]
    watcher = ChildWatcher()
    ended: dict[uuid.UUID, str] = {}

    def wait_for(flow_run_id: uuid.UUID) -> None:
        run = watcher.wait(flow_run_id)
        assert run.state is not None
        ended[flow_run_id] = run.state.type.value

    threads = [threading.Thread(target=wait_for, args=(c.id,)) for c in children]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    assert not ended  # nobody returns before its child is final
    for i, child in enumerate(children):
        set_state(child.id, Completed() if i % 2 == 0 else Failed(message="x"))
    for thread in threads:
        thread.join(timeout=30)
    elapsed = time.monotonic() - started
    assert len(ended) == len(children)
    assert sorted(set(ended.values())) == ["COMPLETED", "FAILED"]
    # one query per interval for all 24 (polling each child would be 24 per interval)
    assert watcher.requests <= elapsed / interval + 2, (watcher.requests, elapsed)


RECORDED = threading.Event()


@task(name="ordered-train")
def ordered_train(spec: dict[str, Any], config_hash: str, plan: Any) -> dict[str, Any]:
    """Expert 1 finishes only once expert 0's outcome has been handed over."""
    if spec["expert_id"] == 1 and not RECORDED.wait(15):
        raise RuntimeError("expert 0's outcome was not handed over while expert 1 ran")
    return {"checkpoint_uri": f"mem://{spec['expert_id']}", "log_uri": "mem://tb"}


def test_each_outcome_is_handed_over_as_its_job_ends(tmp_path: Path) -> None:
    store, spec = open_run_store(str(tmp_path))
    config = resolve_config(store, "asdone", TINY, {"max_parallel_experts": 2})
    run = make_run(store, spec, "asdone", config)
    state, _, _ = initialise_run(run)
    specs = [prepare_training(run, state, k) for k in (0, 1)]
    seen: list[int] = []

    def on_outcome(outcome: JobOutcome) -> None:
        seen.append(outcome.expert_id)
        if outcome.expert_id == 0:
            RECORDED.set()

    @flow(name="as-done")
    def batch() -> list[JobOutcome]:
        return PrefectJobRunner(run, train_task=ordered_train).run_jobs(
            specs, on_outcome=on_outcome
        )

    RECORDED.clear()
    outcomes = batch()
    assert [o.error for o in outcomes] == [None, None]
    assert seen == [0, 1]
