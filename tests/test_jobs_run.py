"""run_train_job / run_eval_job against a real LocalStore and the recording double."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from support.job_doubles import RecordingBackend, eval_spec_dict, train_spec_dict, write_samples

from pec.errors import IncompleteTrainingError, InputError, JobError
from pec.jobs import EvalJobResult, EvalJobSpec, TrainJobSpec, parse_job_spec
from pec.jobs import run as job_run
from pec.runs import layout
from pec.runs.store import LocalStore

RUN, EXPERT, ITERATION = "demo", 1, 2


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    write_samples(store, layout.samples_keys(RUN, EXPERT, ITERATION), num_envs=4, seed=11)
    return store


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> RecordingBackend:
    double = RecordingBackend()
    monkeypatch.setattr(job_run, "get_backend", lambda name: double)
    return double


def train_spec(store: LocalStore, **overrides: object) -> TrainJobSpec:
    spec = parse_job_spec(train_spec_dict(store.root, **overrides))
    assert isinstance(spec, TrainJobSpec)
    return spec


def best_key() -> str:
    return layout.best_checkpoint_key(RUN, EXPERT, ITERATION)


def last_key() -> str:
    return layout.last_checkpoint_key(RUN, EXPERT, ITERATION)


def tb_key() -> str:
    return layout.train_log_prefix(RUN, EXPERT, ITERATION) + "events.out.tfevents.1.double"


def test_train_job_uploads_to_the_layout_keys_and_returns_uris(
    store: LocalStore, backend: RecordingBackend
) -> None:
    progress: list[tuple[int, int, dict[str, float]]] = []
    result = job_run.run_train_job(
        train_spec(store), on_progress=lambda i, n, m: progress.append((i, n, m))
    )
    best = b"best seed=7 levels=3"
    assert store.read_bytes(best_key()) == best
    assert store.read_bytes(last_key()) == b"last " + best
    assert store.read_bytes(tb_key()) == b"tensorboard-double"
    assert result.checkpoint_uri == store.uri(best_key())
    assert result.last_checkpoint_uri == store.uri(last_key())
    assert result.log_uri == str(store.root / "demo/checkpoints/expert_1/iter_2/tb") + "/"
    assert result.metrics == {"mean_level": 3.0, "mean_reward": 1.5, "iterations": 3.0}
    assert result.warning is None
    assert [(i, n) for i, n, _ in progress] == [(1, 3), (2, 3), (3, 3)]
    (request,) = backend.train_requests
    expected_gcr = np.load(io.BytesIO(store.read_bytes(layout.samples_keys(RUN, 1, 2)[0])))
    np.testing.assert_array_equal(request.gcr, expected_gcr)
    assert request.gcr.shape == request.spcf.shape == (4,)
    assert (request.start_level, request.max_iterations, request.seed) == (3, 3, 7)
    assert request.resume_checkpoint is None


def test_resume_checkpoint_is_downloaded_for_the_backend(
    store: LocalStore, backend: RecordingBackend
) -> None:
    previous = layout.best_checkpoint_key(RUN, EXPERT, ITERATION - 1)
    store.write_bytes(previous, b"weights-of-iteration-1")
    result = job_run.run_train_job(train_spec(store, resume_checkpoint_uri=store.uri(previous)))
    assert backend.resume_bytes == [b"weights-of-iteration-1"]
    assert store.read_bytes(best_key()).endswith(b"resumed-from=weights-of-iteration-1")
    assert result.warning is None


def test_missing_resume_checkpoint_fails_the_job(
    store: LocalStore, backend: RecordingBackend
) -> None:
    missing = store.uri(layout.best_checkpoint_key(RUN, EXPERT, 0))
    with pytest.raises(JobError, match="resume_checkpoint_uri"):
        job_run.run_train_job(train_spec(store, resume_checkpoint_uri=missing))
    assert backend.train_requests == []


def test_crash_after_best_checkpoint_fails_as_incomplete_and_keeps_it(
    store: LocalStore, backend: RecordingBackend
) -> None:
    # Issue 13: not a finished expert; the crash rule is the driver's last resort.
    spec = train_spec(store, settings={"fail": "after_checkpoint"})
    with pytest.raises(
        IncompleteTrainingError, match="double told to fail after_checkpoint"
    ) as caught:
        job_run.run_train_job(spec)
    assert f"of {spec.max_iterations} PPO iterations" in str(caught.value)
    assert caught.value.total == spec.max_iterations
    assert store.read_bytes(best_key()) == b"best seed=7 levels=3"
    assert not store.exists(last_key())
    assert store.read_bytes(tb_key()) == b"tensorboard-double"


def test_stale_last_checkpoint_gets_no_resume_marker_after_a_crash(
    store: LocalStore, backend: RecordingBackend
) -> None:
    store.write_bytes(last_key(), b"from a previous attempt")
    with pytest.raises(IncompleteTrainingError):
        job_run.run_train_job(train_spec(store, settings={"fail": "after_checkpoint"}))
    # no resume marker points at a model_last.pt this attempt did not write
    marker = layout.checkpoint_dir(RUN, EXPERT, ITERATION) + job_run.RESUME_MARKER_NAME
    assert not store.exists(marker)


def test_crash_before_best_checkpoint_is_a_job_error(
    store: LocalStore, backend: RecordingBackend
) -> None:
    with pytest.raises(JobError, match=r"failed before writing model_best.pt.*before_checkpoint"):
        job_run.run_train_job(train_spec(store, settings={"fail": "before_checkpoint"}))
    assert not store.exists(best_key())
    assert store.read_bytes(tb_key()) == b"tensorboard-double"  # logs still help debugging


def test_stale_best_checkpoint_from_an_earlier_attempt_does_not_hide_a_crash(
    store: LocalStore, backend: RecordingBackend
) -> None:
    store.write_bytes(best_key(), b"from a previous attempt")
    with pytest.raises(JobError, match=r"before writing model_best.pt"):
        job_run.run_train_job(train_spec(store, settings={"fail": "before_checkpoint"}))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.zeros(3, dtype=np.float32), r"shape \(3,\); expected \(4,\)"),
        (np.zeros((4, 1), dtype=np.float32), r"shape \(4, 1\)"),
        (np.array([0.8, np.nan, 0.8, 0.8], dtype=np.float32), "non-finite"),
        (np.array(["a", "b", "c", "d"]), "non-numeric"),
    ],
)
def test_bad_samples_are_input_errors(
    store: LocalStore, backend: RecordingBackend, values: np.ndarray, message: str
) -> None:
    buffer = io.BytesIO()
    np.save(buffer, values)
    store.write_bytes(layout.samples_keys(RUN, EXPERT, ITERATION)[1], buffer.getvalue())
    with pytest.raises(InputError, match=message):
        job_run.run_train_job(train_spec(store))
    assert backend.train_requests == []


def test_pickled_samples_are_refused(store: LocalStore, backend: RecordingBackend) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}] * 4, dtype=object), allow_pickle=True)
    store.write_bytes(layout.samples_keys(RUN, EXPERT, ITERATION)[0], buffer.getvalue())
    with pytest.raises(InputError, match=r"not a plain .npy"):
        job_run.run_train_job(train_spec(store))


def test_missing_samples_are_input_errors(store: LocalStore, backend: RecordingBackend) -> None:
    store.delete(layout.samples_keys(RUN, EXPERT, ITERATION)[0])
    with pytest.raises(InputError, match="do not exist"):
        job_run.run_train_job(train_spec(store))


def eval_spec(store: LocalStore, **overrides: object) -> EvalJobSpec:
    store.write_bytes(best_key(), b"policy-weights")
    spec = parse_job_spec(eval_spec_dict(store.root, store.uri(best_key()), **overrides))
    assert isinstance(spec, EvalJobSpec)
    return spec


def test_eval_job_returns_one_level_per_design_and_writes_the_result(
    store: LocalStore, backend: RecordingBackend
) -> None:
    key = layout.expert_frontier_results_key(RUN, ITERATION, EXPERT)
    result = job_run.run_job(eval_spec(store, result_key=key))
    assert result == EvalJobResult(levels=[10, 11, 12], expert_id=1)  # start_difficulty + index
    assert json.loads(store.read_bytes(key)) == {"levels": [10, 11, 12], "expert_id": 1}
    (request,) = backend.eval_requests
    np.testing.assert_allclose(request.gcr, [0.8, 0.85, 0.88])
    np.testing.assert_allclose(request.spcf, [0.002, 0.005, 0.009])
    assert (request.num_episodes, request.start_difficulty, request.seed) == (2, 10, 3)
    assert backend.eval_checkpoint_bytes == [b"policy-weights"]


def test_level_search_eval_job_drives_the_probe_primitive(
    store: LocalStore, backend: RecordingBackend
) -> None:
    spec = eval_spec(store, score="level_search", search_max_level=74)
    result = job_run.run_eval_job(spec)
    assert result.levels == [16, 17, 17]  # floor(20 x GCR) for GCR 0.8, 0.85, 0.88
    assert backend.eval_requests == []  # the final-level protocol was not used
    assert 1 <= len(backend.probe_requests) <= 7
    assert all(r.seed == 3 for r in backend.probe_requests)


@pytest.mark.parametrize(
    ("levels", "message"),
    [([1, 2], "2 levels for 3 designs"), ([1, 2, 75], "level 75"), ([1, 2, -1], "level -1")],
)
def test_eval_job_rejects_impossible_levels(
    store: LocalStore, backend: RecordingBackend, levels: list[int], message: str
) -> None:
    with pytest.raises(JobError, match=message):
        job_run.run_eval_job(eval_spec(store, settings={"levels": levels}))


def test_eval_job_failure_names_the_expert(store: LocalStore, backend: RecordingBackend) -> None:
    with pytest.raises(JobError, match=r"evaluation of expert 1 .*double told to fail"):
        job_run.run_eval_job(eval_spec(store, settings={"fail": "evaluate"}))


def test_eval_checkpoint_outside_the_store_fails_clearly(
    store: LocalStore, backend: RecordingBackend, tmp_path: Path
) -> None:
    spec = eval_spec(store).model_copy(update={"checkpoint_uri": str(tmp_path / "elsewhere.pt")})
    with pytest.raises(JobError, match="checkpoint_uri"):
        job_run.run_eval_job(spec)


def test_device_auto_resolves_on_the_machine_that_runs_the_job(
    store: LocalStore, backend: RecordingBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`auto` reaches the backend as cuda:0 or cpu, decided here, and is recorded."""
    import torch

    for cuda, device in ((False, "cpu"), (True, "cuda:0")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        result = job_run.run_train_job(train_spec(store, device="auto"))
        assert backend.train_requests[-1].device == device
        assert result.metrics["device_cuda"] == float(cuda)
        job_run.run_eval_job(eval_spec(store, device="auto"))
        assert backend.eval_requests[-1].device == device
    explicit = job_run.run_train_job(train_spec(store, device="cpu"))
    assert backend.train_requests[-1].device == "cpu" and "device_cuda" not in explicit.metrics
