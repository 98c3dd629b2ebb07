"""Run one job here, in this process: store in, backend on local files, store out.

The backend only sees local paths; this module owns every store transfer, so a backend
can be swapped without touching the flow, and a crash after the first uploaded best
checkpoint still yields a usable result (the reference sheet's EXP_DIR rule).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import tempfile
from pathlib import Path

import numpy as np

from pec.backends.base import (
    Backend,
    EvalRequest,
    ProbeRequest,
    ProgressCallback,
    TrainRequest,
    check_device,
    design_columns,
    resolve_device,
)
from pec.backends.registry import get_backend
from pec.errors import (
    IncompleteTrainingError,
    InputError,
    JobError,
    NotFoundError,
    PECError,
    StoreError,
    one_line,
    quoted,
)
from pec.faults import fault_point
from pec.jobs.spec import (
    EvalJobResult,
    EvalJobSpec,
    TrainJobResult,
    TrainJobSpec,
    job_axes,
)
from pec.jobs.threads import torch_threads
from pec.maths.curriculum import MAX_LEVEL
from pec.maths.design_space import DEFAULT_AXES
from pec.maths.protocols import level_search
from pec.runs import layout
from pec.runs.store import Store

logger = logging.getLogger(__name__)

BEST_CHECKPOINT_NAME = "model_best.pt"
LAST_CHECKPOINT_NAME = "model_last.pt"
RESUME_MARKER_NAME = "resume.json"  # left by an interrupted attempt: where to continue from
TENSORBOARD_PREFIX = "events.out.tfevents"


class _CheckpointUploader:
    """Uploads each checkpoint the moment the backend reports it, so a later crash loses none."""

    def __init__(self, store: Store, spec: TrainJobSpec) -> None:
        self._store = store
        self.best_key = spec.checkpoint_dir + layout.BEST_CHECKPOINT_FILE
        self.last_key = spec.checkpoint_dir + layout.LAST_CHECKPOINT_FILE
        self.marker_key = posixpath.join(posixpath.dirname(self.best_key), RESUME_MARKER_NAME)
        self._uploaded: dict[str, tuple[int, int]] = {}  # key -> (mtime_ns, size) last sent
        self.progress = 0  # last PPO iteration the backend reported as complete
        self.last_uploaded_at = -1  # `progress` when model_last.pt was last sent
        self.last_pending = False  # model_last.pt sent since the last progress report

    def key_for(self, path: Path) -> str:
        if path.name == BEST_CHECKPOINT_NAME:
            return self.best_key
        if path.name == LAST_CHECKPOINT_NAME:
            return self.last_key
        return posixpath.join(posixpath.dirname(self.best_key), path.name)

    def upload(self, path: Path, key: str | None = None) -> None:
        """Send `path` unless this exact file version is already in the store."""
        key = key or self.key_for(path)
        stat = path.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        if self._uploaded.get(key) == version:
            return
        self._store.upload_file(key, path)
        self._uploaded[key] = version
        if key == self.last_key:
            self.last_uploaded_at = self.progress
            self.last_pending = True
        logger.info("uploaded checkpoint %s -> %s", path.name, self._store.uri(key))
        fault_point("checkpoint-uploaded")

    def uploaded(self, key: str) -> bool:
        """Sent by this attempt (an object left by an earlier attempt does not count)."""
        return key in self._uploaded and self._store.exists(key)


def run_job(
    spec: TrainJobSpec | EvalJobSpec, on_progress: ProgressCallback | None = None
) -> TrainJobResult | EvalJobResult:
    """Dispatch on the spec's kind, with the spec's torch thread count (pec.jobs.threads)."""
    with torch_threads(spec.threads):
        if isinstance(spec, TrainJobSpec):
            return run_train_job(spec, on_progress)
        return run_eval_job(spec)


def _job_device(device: str) -> str:
    """The spec's device as this machine runs it (`auto`: cuda:0 with CUDA here, else cpu)."""
    resolved = resolve_device(device)
    check_device(resolved)  # `cuda` where torch has none: one line, before any work
    if resolved != device:
        logger.info("device %s resolves to %s on this machine", device, resolved)
    return resolved


def run_train_job(
    spec: TrainJobSpec, on_progress: ProgressCallback | None = None
) -> TrainJobResult:
    """Train one expert; see the module docstring for the crash rule."""
    store = spec.store.open()
    backend = get_backend(spec.backend)
    # before any download: one line, nothing written
    supported = _backend_axes(backend)
    design_columns(job_axes(spec.axes), np.zeros((0, len(job_axes(spec.axes)))), supported)
    log_prefix = spec.checkpoint_dir + "tb/"
    uploader = _CheckpointUploader(store, spec)
    latest_metrics: dict[str, float] = {}
    what = f"{spec.what} iteration {spec.iteration} of run {spec.run_name!r}"
    total = [0]  # the backend's own count of PPO iterations to reach

    def progress(iteration: int, max_iterations: int, metrics: dict[str, float]) -> None:
        latest_metrics.clear()
        latest_metrics.update({name: float(value) for name, value in metrics.items()})
        uploader.progress, total[0] = iteration, max_iterations
        if uploader.last_pending:
            # model_last.pt of this PPO iteration is in the store: a later attempt (after a
            # kill of any kind) continues from here instead of starting over
            uploader.last_pending = False
            uploader.last_uploaded_at = iteration
            if iteration < max_iterations:
                _mark_interrupted_quietly(store, uploader, max_iterations)
        if on_progress is not None:
            on_progress(iteration, max_iterations, metrics)
        fault_point("train-progress")

    with tempfile.TemporaryDirectory(prefix="pec-train-") as tmp:
        inputs = Path(tmp) / "inputs"
        inputs.mkdir()
        work_dir = Path(tmp) / "work"
        work_dir.mkdir()
        gcr = _load_samples(store, spec.samples_gcr_key, inputs / "gcr.npy", spec.num_envs)
        spcf = _load_samples(store, spec.samples_spcf_key, inputs / "spcf.npy", spec.num_envs)
        leg = None
        if spec.samples_leg_key is not None:
            leg = _load_samples(store, spec.samples_leg_key, inputs / "leg.npy", spec.num_envs)
        resume_uri, max_iterations = spec.resume_checkpoint_uri, spec.max_iterations
        interrupted = _interrupted_attempt(store, uploader)
        if interrupted is not None:
            # Graceful stop: continue the stopped attempt instead of starting over.
            resume_uri, max_iterations = store.uri(uploader.last_key), interrupted
            logger.info(
                "warm-starting %s from the %s its interrupted attempt left (%d iterations left)",
                what,
                LAST_CHECKPOINT_NAME,
                max_iterations,
            )
        resume = None
        if resume_uri is not None:
            resume = inputs / "resume.pt"
            _download_uri(store, resume_uri, resume, "resume_checkpoint_uri")
        teachers: list[Path] = []
        teacher_index = None
        if spec.teacher_checkpoint_uris is not None and spec.samples_teacher_key is not None:
            for position, uri in enumerate(spec.teacher_checkpoint_uris):
                teachers.append(inputs / f"teacher_{position}.pt")
                _download_uri(store, uri, teachers[-1], "teacher_checkpoint_uris")
            index = _load_samples(
                store, spec.samples_teacher_key, inputs / "teacher.npy", spec.num_envs
            )
            teacher_index = index.astype(np.int64)
            if not np.array_equal(teacher_index, index):
                raise InputError(
                    f"samples {store.uri(spec.samples_teacher_key)} must hold whole teacher positions"
                )
        device = _job_device(spec.device)
        request = TrainRequest(
            gcr=gcr,
            spcf=spcf,
            start_level=spec.start_level,
            max_iterations=max_iterations,
            seed=spec.seed,
            device=device,
            work_dir=work_dir,
            resume_checkpoint=resume,
            settings=dict(spec.settings),
            continues_job=interrupted is not None,
            leg=leg,
            teachers=tuple(teachers),
            teacher_index=teacher_index,
        )
        logger.info("training %s on backend %s (%d envs)", what, spec.backend, spec.num_envs)
        warning: str | None = None
        try:
            outcome = backend.train(request, on_progress=progress, on_checkpoint=uploader.upload)
        except Exception as exc:
            _upload_logs_quietly(store, work_dir, log_prefix)
            _mark_interrupted_quietly(store, uploader, total[0])
            if not uploader.uploaded(uploader.best_key):
                raise JobError(
                    f"training of {what} failed before writing {BEST_CHECKPOINT_NAME}: "
                    f"{quoted(exc)}; fix the cause and re-run the job"
                ) from exc
            # Not finished: fail, so a retry continues from model_last.pt; the crash rule
            # (keep model_best.pt) is the driver's last resort once retries are exhausted.
            done = _relative_progress(spec, uploader.progress, total[0])
            raise IncompleteTrainingError(
                f"training of {what} stopped after {done} of {spec.max_iterations} PPO "
                f"iterations ({quoted(exc)}); a retry continues from "
                f"{LAST_CHECKPOINT_NAME} where one was saved",
                completed=done,
                total=spec.max_iterations,
            ) from exc
        else:
            uploader.upload(outcome.best_checkpoint, uploader.best_key)
            uploader.upload(outcome.last_checkpoint, uploader.last_key)
            _upload_logs(store, work_dir, log_prefix)
            store.delete(uploader.marker_key)  # finished: nothing left to continue
            metrics = {name: float(value) for name, value in outcome.metrics.items()}
            if not uploader.uploaded(uploader.best_key):
                raise JobError(
                    f"{BEST_CHECKPOINT_NAME} of {what} is missing from the store after upload "
                    f"({store.uri(uploader.best_key)}); check the store and re-run the job"
                )
    if device != spec.device:  # `auto`: record where it went (1 = cuda, 0 = cpu)
        metrics["device_cuda"] = 1.0 if device.startswith("cuda") else 0.0
    last_uri = store.uri(uploader.last_key) if uploader.uploaded(uploader.last_key) else None
    return TrainJobResult(
        checkpoint_uri=store.uri(uploader.best_key),
        last_checkpoint_uri=last_uri,
        metrics=metrics,
        log_uri=prefix_uri(store, log_prefix),
        warning=warning,
    )


def run_eval_job(spec: EvalJobSpec) -> EvalJobResult:
    """Evaluate one checkpoint on every design; optionally persist the result at result_key."""
    store = spec.store.open()
    backend = get_backend(spec.backend)
    axes = job_axes(spec.axes)
    designs = np.asarray(spec.designs, dtype=np.float64).reshape(-1, len(axes))
    columns = design_columns(axes, designs, _backend_axes(backend))
    with tempfile.TemporaryDirectory(prefix="pec-eval-") as tmp:
        checkpoint = Path(tmp) / "checkpoint.pt"
        _download_uri(store, spec.checkpoint_uri, checkpoint, "checkpoint_uri")
        request = EvalRequest(
            checkpoint=checkpoint,
            gcr=columns.gcr,
            spcf=columns.spcf,
            num_episodes=spec.num_episodes,
            start_difficulty=spec.start_difficulty,
            seed=spec.seed,
            device=_job_device(spec.device),
            settings=dict(spec.settings),
            leg=columns.leg,
        )
        logger.info(
            "evaluating expert %d on %d designs (backend %s)",
            spec.expert_id,
            len(spec.designs),
            spec.backend,
        )
        try:
            if spec.score == "level_search":
                levels = _search_levels(backend, request, spec.search_max_level)
            else:
                levels = backend.evaluate(request)
        except Exception as exc:
            raise JobError(
                f"evaluation of expert {spec.expert_id} ({spec.checkpoint_uri}) failed: "
                f"{quoted(exc)}; fix the cause and re-run the job"
            ) from exc
    _check_levels(levels, len(spec.designs), spec.backend)
    result = EvalJobResult(levels=[int(level) for level in levels], expert_id=spec.expert_id)
    if spec.result_key is not None:
        payload = json.dumps(result.model_dump(mode="json"), indent=2).encode()
        store.write_bytes(spec.result_key, payload)
        fault_point("eval-result-written")
    return result


def _backend_axes(backend: Backend) -> tuple[str, ...]:
    """The design axes a backend simulates (its ``design_axes``; gcr and spcf if it names none)."""
    return tuple(getattr(backend, "design_axes", DEFAULT_AXES))


def _search_levels(backend: Backend, request: EvalRequest, search_max_level: int) -> list[int]:
    """The level-search protocol (pec.maths.protocols) on the backend's probe_levels primitive."""
    probe_levels = getattr(backend, "probe_levels", None)
    if probe_levels is None:
        raise JobError(
            f"backend {backend.name!r} has no probe_levels; use score: final_level with it"
        )

    def probe(indices: np.ndarray, levels: np.ndarray) -> list[bool]:
        probe_request = ProbeRequest(
            checkpoint=request.checkpoint,
            gcr=request.gcr[indices],
            spcf=request.spcf[indices],
            levels=levels,
            seed=request.seed,
            device=request.device,
            settings=request.settings,
            leg=None if request.leg is None else request.leg[indices],
        )
        return list(probe_levels(probe_request))

    return level_search(probe, len(request.gcr), search_max_level)


def _relative_progress(spec: TrainJobSpec, done_absolute: int, total_absolute: int) -> int:
    """PPO iterations of this job's `max_iterations` done, across continued attempts.

    Backends count from the warm-start checkpoint's own iteration, so the absolute numbers
    are shifted by (total - max_iterations).
    """
    if total_absolute <= 0:
        return 0
    return max(0, min(spec.max_iterations, spec.max_iterations - (total_absolute - done_absolute)))


def prefix_uri(store: Store, prefix: str) -> str:
    """URI of a folder-like prefix (store keys may not end in '/')."""
    return store.uri(prefix.rstrip("/")) + "/"


def _mark_interrupted_quietly(store: Store, uploader: _CheckpointUploader, total: int) -> None:
    """Record that this attempt's model_last.pt is a point to continue from.

    Only a failed attempt that uploaded model_last.pt itself (the backends write one when
    stopped by SIGTERM) leaves the marker; a SIGKILLed one leaves none, so its retry starts
    the (expert, iteration) training over, bit-identical to an uninterrupted run.
    """
    if not uploader.uploaded(uploader.last_key) or uploader.last_uploaded_at < 0:
        return
    marker = {
        "checkpoint": LAST_CHECKPOINT_NAME,
        "completed_iterations": uploader.last_uploaded_at,
        "total_iterations": total,
    }
    try:
        store.write_bytes(uploader.marker_key, json.dumps(marker).encode())
    except (PECError, OSError) as exc:
        logger.warning("could not record the resume point %s: %s", uploader.marker_key, exc)


def _interrupted_attempt(store: Store, uploader: _CheckpointUploader) -> int | None:
    """PPO iterations left after an interrupted attempt of this job, or None to start over."""
    try:
        marker = json.loads(store.read_bytes(uploader.marker_key))
    except NotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        logger.warning("ignoring unreadable resume marker %s", store.uri(uploader.marker_key))
        return None
    done, total = marker.get("completed_iterations"), marker.get("total_iterations")
    if (
        not isinstance(done, int)
        or not isinstance(total, int)
        or not 0 <= done < total
        or not store.exists(uploader.last_key)
    ):
        return None
    return total - done


def _check_levels(levels: list[int], n_designs: int, backend: str) -> None:
    if len(levels) != n_designs:
        raise JobError(
            f"backend {backend!r} returned {len(levels)} levels for {n_designs} designs; "
            "the backend must return one level per design"
        )
    for index, level in enumerate(levels):
        if int(level) != level or not 0 <= int(level) <= MAX_LEVEL:
            raise JobError(
                f"backend {backend!r} returned level {level!r} for design {index}; "
                f"levels must be integers in [0, {MAX_LEVEL}]"
            )


def _load_samples(store: Store, key: str, path: Path, num_envs: int) -> np.ndarray:
    """Per-environment design values: one finite number per environment, no pickles."""
    try:
        store.download_file(key, path)
    except NotFoundError as exc:
        raise InputError(
            f"samples {store.uri(key)} do not exist; write them before starting the job"
        ) from exc
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(
            f"samples {store.uri(key)} are not a plain .npy array ({one_line(exc)}); save them with np.save"
        ) from exc
    if not isinstance(values, np.ndarray) or values.shape != (num_envs,):
        shape = getattr(values, "shape", None)
        raise InputError(
            f"samples {store.uri(key)} have shape {shape}; expected ({num_envs},), "
            "one value per environment (num_envs)"
        )
    if not np.issubdtype(values.dtype, np.number) or not np.all(np.isfinite(values)):
        raise InputError(
            f"samples {store.uri(key)} contain non-finite or non-numeric values; resample them"
        )
    return values.astype(np.float32)


def _download_uri(store: Store, uri: str, path: Path, field: str) -> None:
    try:
        key = store.key_for_uri(uri)
        store.download_file(key, path)
    except NotFoundError as exc:
        raise JobError(f"{field} {uri} does not exist in the store; pass an existing one") from exc
    except StoreError as exc:
        raise JobError(f"{field} {uri} could not be read: {one_line(exc)}") from exc


def _tensorboard_files(work_dir: Path) -> list[Path]:
    return sorted(path for path in work_dir.rglob(f"{TENSORBOARD_PREFIX}*") if path.is_file())


def _upload_logs(store: Store, work_dir: Path, log_prefix: str) -> None:
    """Mirror TensorBoard event files under the log prefix.

    Paths are kept relative to the deepest folder holding all of them, so a single writer's
    files land directly under the prefix and several writers keep their sub-folders apart.
    """
    files = _tensorboard_files(work_dir)
    if not files:
        return
    base = Path(os.path.commonpath([path.parent for path in files]))
    for path in files:
        store.upload_file(posixpath.join(log_prefix, path.relative_to(base).as_posix()), path)


def _upload_logs_quietly(store: Store, work_dir: Path, log_prefix: str) -> None:
    """On failure the logs are a courtesy: never let their upload hide the real error."""
    try:
        _upload_logs(store, work_dir, log_prefix)
    except (PECError, OSError) as exc:
        logger.warning("could not upload TensorBoard logs to %s: %s", log_prefix, exc)
