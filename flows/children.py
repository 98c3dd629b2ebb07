"""Expert child flow runs (`executor: deployment`) that cannot double, watched by one poller.

A child is started under an idempotency key derived from its job: (run, iteration, job kind,
expert) plus a digest of the job spec. The server stores one flow run per (flow, key), so a
retried parent that launches the same job again gets the child that is already Scheduled,
Running or Completed back instead of a second one ("adopts" it). Only a child that ended
without success (Failed, Crashed, Cancelled) is replaced, under the key's next attempt
suffix, so a retry does re-run what failed.

Waiting: every job thread of a parent blocks on `CHILD_WATCHER`, whose single thread asks
the server about all children in flight with one filtered query per interval (pages of
`PAGE` ids), instead of each child being polled on its own (`run_deployment` polls every
5 s per child: ~3,000 requests a minute at 256 children). The interval is
`PEC_CHILD_POLL_S` seconds (default 5).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import MissingContextError, ObjectNotFound

from pec.errors import JobError
from pec.jobs.spec import EvalJobSpec, TrainJobSpec

logger = logging.getLogger(__name__)

POLL_ENV = "PEC_CHILD_POLL_S"
DEFAULT_POLL_S = 5.0
PAGE = 200  # flow-run ids per filter request
MAX_ATTEMPTS = 100  # children per job key (each earlier one Failed, Crashed or Cancelled)
MAX_POLL_FAILURES = 60  # consecutive failed polls before the waiters are told


def child_key(spec: TrainJobSpec | EvalJobSpec) -> str:
    """`pec/<run>/it<N>/<train|eval>-<k>/<spec digest>`: the same job, the same key.

    The digest tells apart jobs that share (run, iteration, kind, expert) but are not the
    same job, e.g. a final evaluation on a held-out set and the iteration's evaluation.
    """
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return f"pec/{spec.run_name}/it{spec.iteration}/{spec.kind}-{spec.expert_id}/{digest}"


def attempt_key(key: str, attempt: int) -> str:
    return key if attempt == 0 else f"{key}/attempt-{attempt + 1}"


@dataclass(frozen=True)
class GpuSlots:
    """A GPU pool laid out as one work queue per GPU index (`gpu-0` ... `gpu-<G-1>`).

    On every GPU host one worker serves each queue with `--limit 1`, so expert k sent to
    queue `gpu-<i>` with `device_ids: ["<i>"]` is the only container on GPU i of whichever
    host runs it (docs/DEPLOYING.md). `create_kwargs` is the deployment's own
    `container_create_kwargs`, whose GPU device requests get the slot's id.
    """

    slots: tuple[int, ...]
    create_kwargs: dict[str, Any]

    def route(self, expert_id: int) -> tuple[str, dict[str, Any]]:
        """(work queue, flow-run job variables) of expert `expert_id`: slots in turn."""
        slot = self.slots[expert_id % len(self.slots)]
        return f"{GPU_QUEUE_PREFIX}{slot}", {
            "container_create_kwargs": pin_gpu(self.create_kwargs, str(slot))
        }


GPU_QUEUE_PREFIX = "gpu-"


def asks_for_gpu(request: dict[str, Any]) -> bool:
    capabilities = request.get("capabilities") or []
    return any("gpu" in group for group in capabilities)


def pin_gpu(create_kwargs: dict[str, Any], device_id: str) -> dict[str, Any]:
    """`create_kwargs` with each GPU device request for exactly `device_id` (not a count:
    Docker turns `count: N` into GPUs 0..N-1 on every container)."""
    requests = []
    for request in create_kwargs.get("device_requests") or []:
        if isinstance(request, dict) and asks_for_gpu(request):
            request = {k: v for k, v in request.items() if k != "count"}
            request["device_ids"] = [device_id]
        requests.append(request)
    return {**create_kwargs, "device_requests": requests}


_slots_cache: dict[str, GpuSlots | None] = {}
_slots_lock = threading.Lock()


def gpu_slots(deployment: str) -> GpuSlots | None:
    """The deployment's GPU slots, or None (no per-GPU queues, or no GPU asked for).

    Read once per process and deployment.
    """
    with _slots_lock:
        if deployment in _slots_cache:
            return _slots_cache[deployment]
        with get_client(sync_client=True) as client:
            try:
                found = client.read_deployment_by_name(deployment)
            except ObjectNotFound:
                return None  # run_deployment says so, in its own words
            create_kwargs = dict((found.job_variables or {}).get("container_create_kwargs") or {})
            requests = create_kwargs.get("device_requests") or []
            slots: GpuSlots | None = None
            gpu = any(isinstance(r, dict) and asks_for_gpu(r) for r in requests)
            if gpu and found.work_pool_name:
                queues = client.read_work_queues(work_pool_name=found.work_pool_name)
                indexes = sorted(
                    int(q.name.removeprefix(GPU_QUEUE_PREFIX))
                    for q in queues
                    if q.name.startswith(GPU_QUEUE_PREFIX)
                    and q.name.removeprefix(GPU_QUEUE_PREFIX).isdigit()
                )
                if indexes:
                    slots = GpuSlots(tuple(indexes), create_kwargs)
        _slots_cache[deployment] = slots
        return slots


def start_or_adopt_child(
    deployment: str,
    parameters: dict[str, Any],
    flow_run_name: str,
    key: str,
    expert_id: int = 0,
) -> FlowRun:
    """The job's child flow run: the existing one unless it ended without success.

    On a pool with per-GPU queues the child goes to its slot's queue with its device id.
    Returns at once (the child may still be Scheduled); see `ChildWatcher.wait`.
    """
    slots = gpu_slots(deployment)
    queue, job_variables = slots.route(expert_id) if slots is not None else (None, None)
    for attempt in range(MAX_ATTEMPTS):
        child = cast(
            FlowRun,
            run_deployment(
                deployment,
                parameters=parameters,
                timeout=0,
                as_subflow=True,
                idempotency_key=attempt_key(key, attempt),
                flow_run_name=flow_run_name,
                work_queue_name=queue,
                job_variables=job_variables,
            ),
        )
        state = child.state
        if state is None or not state.is_final() or state.is_completed():
            if state is not None and state.type.value != "SCHEDULED":
                _run_log("adopted child flow run %s (%s, %s)", child.name, child.id, state.name)
            return child
        _run_log(
            "child flow run %s (%s) ended %s; starting attempt %d",
            child.name,
            child.id,
            state.name,
            attempt + 2,
        )
    raise JobError(
        f"job {key}: {MAX_ATTEMPTS} child flow runs ended without success; "
        "fix the cause (see the last one in the UI) before retrying"
    )


def _run_log(message: str, *args: object) -> None:
    """To the task run's log (shown in the UI) when there is one, else this module's."""
    try:
        get_run_logger().info(message, *args)
    except MissingContextError:
        logger.info(message, *args)


def poll_interval_s() -> float:
    raw = os.environ.get(POLL_ENV)
    if raw is None:
        return DEFAULT_POLL_S
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_POLL_S
    return value if value > 0 else DEFAULT_POLL_S


@dataclass
class _Waiter:
    done: threading.Event = field(default_factory=threading.Event)
    run: FlowRun | None = None
    error: str | None = None


class ChildWatcher:
    """One polling thread for every child flow run this process waits on.

    `requests` counts the filter queries made (for tests and the scale benchmark).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[UUID, list[_Waiter]] = {}
        self._thread: threading.Thread | None = None
        self.requests = 0

    def wait(self, flow_run_id: UUID) -> FlowRun:
        """Block until the child is final; returns it as last read."""
        waiter = _Waiter()
        with self._lock:
            self._waiters.setdefault(flow_run_id, []).append(waiter)
            if self._thread is None:
                # the caller's context carries the API settings (e.g. a test harness's URL)
                context = contextvars.copy_context()
                self._thread = threading.Thread(
                    target=context.run, args=(self._poll,), name="pec-child-watcher", daemon=True
                )
                self._thread.start()
        waiter.done.wait()
        if waiter.run is None:
            raise JobError(f"child flow run {flow_run_id}: {waiter.error}")
        return waiter.run

    def _poll(self) -> None:
        failures = 0
        with get_client(sync_client=True) as client:
            while True:
                with self._lock:
                    ids = list(self._waiters)
                    if not ids:
                        self._thread = None
                        return
                try:
                    final: list[FlowRun] = []
                    for start in range(0, len(ids), PAGE):
                        page = ids[start : start + PAGE]
                        self.requests += 1
                        runs = client.read_flow_runs(
                            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=page)),
                            limit=len(page),
                        )
                        final.extend(r for r in runs if r.state is not None and r.state.is_final())
                    failures = 0
                except Exception as exc:  # a server hiccup must not strand the waiters
                    failures += 1
                    logger.warning("polling %d child flow runs failed: %s", len(ids), exc)
                    if failures >= MAX_POLL_FAILURES:
                        self._fail_all(f"the Prefect API failed {failures} times in a row: {exc}")
                        failures = 0
                    time.sleep(poll_interval_s())
                    continue
                with self._lock:
                    for run in final:
                        for waiter in self._waiters.pop(run.id, []):
                            waiter.run = run
                            waiter.done.set()
                time.sleep(poll_interval_s())

    def _fail_all(self, error: str) -> None:
        with self._lock:
            waiters = [w for ws in self._waiters.values() for w in ws]
            self._waiters.clear()
        for waiter in waiters:
            waiter.error = error
            waiter.done.set()


CHILD_WATCHER = ChildWatcher()
