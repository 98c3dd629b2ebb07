"""Executors: in-process, a real `python -m pec.jobs` subprocess, and docker-py via a double."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.job_doubles import FakeDockerClient, eval_spec_dict, train_spec_dict, write_samples

from pec.backends.registry import TEST_BACKEND_MODULE_ENV
from pec.errors import ConfigError, IncompleteTrainingError, JobError
from pec.jobs import EvalJobResult, EvalJobSpec, TrainJobResult, TrainJobSpec, parse_job_spec
from pec.jobs.docker_executor import DockerExecutor, container_create_kwargs, redacted
from pec.jobs.executors import InProcessExecutor, SubprocessExecutor, make_executor
from pec.runs import layout
from pec.runs.store import LocalStore

TESTS_DIR = Path(__file__).resolve().parent
DOUBLES_ENV = {TEST_BACKEND_MODULE_ENV: "support.job_doubles", "PYTHONPATH": str(TESTS_DIR)}
RUN, EXPERT, ITERATION = "demo", 1, 2
BEST = b"best seed=7 levels=3"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    write_samples(store, layout.samples_keys(RUN, EXPERT, ITERATION), num_envs=4, seed=5)
    return store


@pytest.fixture
def doubles_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TEST_BACKEND_MODULE_ENV, "support.job_doubles")


def train_spec(store: LocalStore, **overrides: object) -> TrainJobSpec:
    spec = parse_job_spec(train_spec_dict(store.root, **overrides))
    assert isinstance(spec, TrainJobSpec)
    return spec


def best_key() -> str:
    return layout.best_checkpoint_key(RUN, EXPERT, ITERATION)


def pid_is_gone(pid: int) -> bool:
    """Dead or a zombie waiting for init: either way it no longer runs."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


# --- in-process -----------------------------------------------------------------------------


def test_in_process_executor_runs_the_job_and_logs_progress(
    store: LocalStore, doubles_env: None
) -> None:
    lines: list[str] = []
    result = InProcessExecutor().execute(train_spec(store), log=lines.append)
    assert isinstance(result, TrainJobResult)
    assert store.read_bytes(best_key()) == BEST
    assert lines == [
        "progress 1/3 mean_level=1 mean_reward=0.5",
        "progress 2/3 mean_level=2 mean_reward=1",
        "progress 3/3 mean_level=3 mean_reward=1.5",
    ]


# --- subprocess -----------------------------------------------------------------------------


def test_subprocess_executor_returns_the_same_result_as_in_process(
    store: LocalStore, doubles_env: None
) -> None:
    lines: list[str] = []
    result = SubprocessExecutor(env=DOUBLES_ENV).execute(train_spec(store), log=lines.append)
    assert result == TrainJobResult(
        checkpoint_uri=store.uri(best_key()),
        last_checkpoint_uri=store.uri(layout.last_checkpoint_key(RUN, EXPERT, ITERATION)),
        metrics={"mean_level": 3.0, "mean_reward": 1.5, "iterations": 3.0},
        log_uri=str(store.root / "demo/checkpoints/expert_1/iter_2/tb") + "/",
        warning=None,
    )
    assert any("progress 2/3 mean_level=2 mean_reward=1" in line for line in lines)
    assert lines[-1].startswith("PEC_JOB_RESULT ")
    assert json.loads(lines[-1].removeprefix("PEC_JOB_RESULT ")) == result.model_dump(mode="json")


def test_subprocess_output_is_streamed_while_the_job_runs(
    store: LocalStore, tmp_path: Path
) -> None:
    # The job blocks after its first progress line until the log sink has seen that line:
    # if lines were only delivered at exit, the job would never finish.
    handshake = tmp_path / "seen-progress-1"

    def log(line: str) -> None:
        if "progress 1/3" in line:
            handshake.touch()

    spec = train_spec(store, settings={"handshake_file": str(handshake)})
    result = SubprocessExecutor(env=DOUBLES_ENV, timeout_s=60).execute(spec, log=log)
    assert isinstance(result, TrainJobResult)
    assert result.warning is None


def test_subprocess_eval_job(store: LocalStore) -> None:
    store.write_bytes(best_key(), b"weights")
    spec = parse_job_spec(eval_spec_dict(store.root, store.uri(best_key())))
    assert isinstance(spec, EvalJobSpec)
    result = SubprocessExecutor(env=DOUBLES_ENV).execute(spec)
    assert result == EvalJobResult(levels=[10, 11, 12], expert_id=1)


def test_subprocess_failure_before_checkpoint_raises_with_the_output_tail(
    store: LocalStore,
) -> None:
    spec = train_spec(store, settings={"fail": "before_checkpoint"})
    with pytest.raises(JobError, match=r"failed \(exit code 1\)") as caught:
        SubprocessExecutor(env=DOUBLES_ENV).execute(spec)
    assert "double told to fail before_checkpoint" in str(caught.value)


def test_subprocess_job_verdict_beats_a_stale_checkpoint(store: LocalStore) -> None:
    # A best checkpoint left by an earlier attempt must not turn this failure into success.
    store.write_bytes(best_key(), b"from an earlier attempt")
    spec = train_spec(store, settings={"fail": "before_checkpoint"})
    with pytest.raises(JobError, match=r"failed \(exit code 1\)"):
        SubprocessExecutor(env=DOUBLES_ENV).execute(spec)


def test_subprocess_killed_after_checkpoint_fails_as_incomplete_and_keeps_it(
    store: LocalStore,
) -> None:
    # Issue 13: a killed training is not a finished expert; it fails (so a retry continues)
    # and the crash rule is the driver's last resort afterwards (pec.iteration.driver).
    spec = train_spec(store, settings={"fail": "sigkill_after_checkpoint"})
    with pytest.raises(IncompleteTrainingError, match="exited with code -9") as caught:
        SubprocessExecutor(env=DOUBLES_ENV).execute(spec)
    assert caught.value.total == spec.max_iterations
    assert store.read_bytes(best_key()) == BEST  # kept for the crash rule


def test_subprocess_timeout_kills_the_whole_process_group(
    store: LocalStore, tmp_path: Path
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    spec = train_spec(
        store,
        settings={"hang": "before_checkpoint", "spawn_child_pid_file": str(pid_file)},
    )
    with pytest.raises(JobError, match=r"stopped \(timeout after 3 s\)"):
        SubprocessExecutor(env=DOUBLES_ENV, timeout_s=3, grace_s=2).execute(spec)
    assert not store.exists(best_key())
    assert pid_is_gone(int(pid_file.read_text()))


def test_subprocess_timeout_after_checkpoint_fails_as_incomplete(store: LocalStore) -> None:
    # SIGTERM becomes an exception inside the job, which reports itself incomplete.
    spec = train_spec(store, settings={"hang": "after_checkpoint"})
    with pytest.raises(IncompleteTrainingError) as caught:
        SubprocessExecutor(env=DOUBLES_ENV, timeout_s=4, grace_s=5).execute(spec)
    message = str(caught.value)
    assert "stopped (timeout after 4 s)" in message and "PPO iterations" in message
    assert "SIGTERM" in message
    assert store.exists(best_key())


def test_subprocess_ignoring_sigterm_is_killed_and_fails_as_incomplete(
    store: LocalStore,
) -> None:
    spec = train_spec(store, settings={"hang": "after_checkpoint", "ignore_sigterm": True})
    with pytest.raises(IncompleteTrainingError, match=r"stopped \(timeout after 4 s\)"):
        SubprocessExecutor(env=DOUBLES_ENV, timeout_s=4, grace_s=0.5).execute(spec)
    assert store.exists(best_key())


# --- the CLI's exit codes -------------------------------------------------------------------


def run_cli(spec_path: Path, result_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pec.jobs", str(spec_path), "--result", str(result_path)],
        capture_output=True,
        text=True,
        env={**os.environ, **DOUBLES_ENV},
        timeout=60,
    )


def test_cli_exit_codes(store: LocalStore, tmp_path: Path) -> None:
    spec_path, result_path = tmp_path / "spec.json", tmp_path / "result.json"
    spec_path.write_text(json.dumps(train_spec_dict(store.root, bogus=1)))
    bad = run_cli(spec_path, result_path)
    assert bad.returncode == 2
    assert "bogus" in bad.stderr

    spec_path.write_text(
        train_spec(store, settings={"fail": "before_checkpoint"}).model_dump_json()
    )
    failed = run_cli(spec_path, result_path)
    assert failed.returncode == 1
    assert "failed before writing model_best.pt" in failed.stderr
    assert not result_path.exists()

    spec_path.write_text(train_spec(store).model_dump_json())
    ok = run_cli(spec_path, result_path)
    assert ok.returncode == 0
    written = json.loads(result_path.read_text())
    assert written["checkpoint_uri"] == store.uri(best_key())
    last_line = ok.stdout.strip().splitlines()[-1]
    assert json.loads(last_line.removeprefix("PEC_JOB_RESULT ")) == written


def test_cli_unexpected_crash_has_its_own_exit_code(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pec.jobs import __main__ as job_cli

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug outside the backend")

    monkeypatch.setattr(job_cli, "run_job", crash)
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(train_spec(store).model_dump_json())
    assert job_cli.main([str(spec_path)]) == 3


# --- docker (docker-py double; the real engine is exercised elsewhere) ------------------------


def test_container_kwargs_for_a_cpu_job(tmp_path: Path) -> None:
    kwargs = container_create_kwargs(
        image="pec:cpu",
        host_job_dir=tmp_path,
        volumes={"/data/store": "/data/store", "/ro": {"bind": "/in", "mode": "ro"}},
        environment={"PEC_LOG_LEVEL": "INFO"},
        host_env={"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "HOME": "/x"},
        network_mode="host",
        shm_size="2g",
    )
    assert kwargs == {
        "image": "pec:cpu",
        "command": [
            "python",
            "-m",
            "pec.jobs",
            "/pec_job/spec.json",
            "--result",
            "/pec_job/result.json",
        ],
        "detach": True,
        "volumes": {
            str(tmp_path): {"bind": "/pec_job", "mode": "rw"},
            "/data/store": {"bind": "/data/store", "mode": "rw"},
            "/ro": {"bind": "/in", "mode": "ro"},
        },
        "environment": {
            "PYTHONUNBUFFERED": "1",
            "AWS_ACCESS_KEY_ID": "AKIA",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t",
            "PEC_LOG_LEVEL": "INFO",
        },
        "labels": {"pec.job": "1"},
        "network_mode": "host",
        "shm_size": "2g",
    }
    assert "device_requests" not in kwargs
    shown = redacted(kwargs)
    assert shown["environment"] == [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "PEC_LOG_LEVEL",
        "PYTHONUNBUFFERED",
    ]
    assert "s3cr3t" not in repr(shown)


@pytest.mark.parametrize("gpus", [1, 2, -1])
def test_container_kwargs_request_gpus(tmp_path: Path, gpus: int) -> None:
    kwargs = container_create_kwargs(image="pec:gpu", host_job_dir=tmp_path, gpus=gpus, host_env={})
    (request,) = kwargs["device_requests"]
    assert request["Count"] == gpus
    assert request["Capabilities"] == [["gpu"]]


def test_container_kwargs_reject_nonsense(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="gpus"):
        container_create_kwargs(image="pec:gpu", host_job_dir=tmp_path, gpus=-2)
    with pytest.raises(ConfigError, match="image"):
        container_create_kwargs(image="", host_job_dir=tmp_path)


def docker_executor(
    client: FakeDockerClient, timeout_s: float | None = None, stop_timeout_s: int = 30
) -> DockerExecutor:
    return DockerExecutor(
        "pec:cpu",
        docker_client_factory=lambda: client,
        poll_interval_s=0.01,
        timeout_s=timeout_s,
        stop_timeout_s=stop_timeout_s,
    )


def test_docker_success_streams_logs_reads_the_result_and_removes_the_container(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    expected = TrainJobResult(
        checkpoint_uri="/s/best.pt", metrics={"mean_level": 2.0}, log_uri="/s/tb/"
    )
    client = FakeDockerClient(
        log_chunks=[b"progress 1/2 mean", b"_level=1\nprogress 2/2", b" mean_level=2\ndone"],
        result=expected.model_dump(mode="json"),
    )
    lines: list[str] = []
    with caplog.at_level(logging.DEBUG):
        result = docker_executor(client).execute(train_spec(store), log=lines.append)
    assert result == expected
    assert lines == ["progress 1/2 mean_level=1", "progress 2/2 mean_level=2", "done"]
    (container,) = client.containers.created
    assert container.removed and container.stopped_with is None
    assert container.kwargs["environment"]["AWS_SECRET_ACCESS_KEY"] == "very-secret-value"
    assert container.kwargs["labels"] == {"pec.job": "1", "pec.runs.run": "demo", "pec.expert": "1"}
    spec_mount = next(iter(container.kwargs["volumes"]))
    assert not Path(spec_mount).exists()  # the job folder is cleaned up
    assert "very-secret-value" not in caplog.text
    assert "AWS_SECRET_ACCESS_KEY" in caplog.text


def test_docker_crash_after_checkpoint_fails_as_incomplete(store: LocalStore) -> None:
    store.write_bytes(best_key(), BEST)
    client = FakeDockerClient(exit_code=137, log_chunks=[b"Killed\n"])
    with pytest.raises(IncompleteTrainingError, match="exited with code 137"):
        docker_executor(client).execute(train_spec(store))
    assert store.read_bytes(best_key()) == BEST
    assert client.containers.created[0].removed


def test_docker_crash_before_checkpoint_raises_with_the_log_tail(store: LocalStore) -> None:
    client = FakeDockerClient(exit_code=3, log_chunks=[b"Traceback\nCUDA error: out of memory\n"])
    with pytest.raises(JobError, match="exited with code 3 and left no usable result") as caught:
        docker_executor(client).execute(train_spec(store))
    assert "CUDA error: out of memory" in str(caught.value)
    assert client.containers.created[0].removed


def test_docker_job_verdict_is_final_even_with_a_checkpoint_in_the_store(
    store: LocalStore,
) -> None:
    store.write_bytes(best_key(), BEST)
    client = FakeDockerClient(exit_code=1, log_chunks=[b"error: training failed before\n"])
    with pytest.raises(JobError, match=r"(?s)failed \(exit code 1\).*training failed before"):
        docker_executor(client).execute(train_spec(store))


def test_docker_timeout_stops_then_removes(store: LocalStore) -> None:
    client = FakeDockerClient(exit_code=None, log_chunks=[b"working\n"])
    with pytest.raises(JobError, match=r"stopped \(timeout after 0.2 s\)"):
        docker_executor(client, timeout_s=0.2, stop_timeout_s=7).execute(train_spec(store))
    (container,) = client.containers.created
    assert container.stopped_with == 7
    assert container.removed


def test_docker_cancel_event_stops_then_removes(store: LocalStore) -> None:
    cancel = threading.Event()
    client = FakeDockerClient(exit_code=None, log_chunks=[b"progress 1/9\n"])

    def log(line: str) -> None:
        if line.startswith("progress"):
            cancel.set()

    with pytest.raises(JobError, match="cancelled"):
        docker_executor(client).execute(train_spec(store), log=log, cancel_event=cancel)
    (container,) = client.containers.created
    assert container.stopped_with == 30
    assert container.removed


def test_docker_keyboard_interrupt_stops_removes_and_propagates(store: LocalStore) -> None:
    client = FakeDockerClient(exit_code=None, interrupt_on_reload=True)
    with pytest.raises(KeyboardInterrupt):
        docker_executor(client).execute(train_spec(store))
    (container,) = client.containers.created
    assert container.stopped_with == 30
    assert container.removed


# --- factory ------------------------------------------------------------------------------


def test_make_executor_kinds() -> None:
    assert isinstance(make_executor("inprocess"), InProcessExecutor)
    sub = make_executor("subprocess", timeout_s=5.0)
    assert isinstance(sub, SubprocessExecutor) and sub.timeout_s == 5.0
    docker = make_executor("docker", image="pec:gpu", gpus=1)
    assert isinstance(docker, DockerExecutor) and docker.gpus == 1
    with pytest.raises(ConfigError, match="executor 'kubernetes' is unknown"):
        make_executor("kubernetes")


# --- the real path: the embedded MuJoCo backend ------------------------------------------

TINY_MUJOCO = {"task": {"episode_steps": 20}}  # short episodes keep the test in seconds


@pytest.mark.slow
@pytest.mark.parametrize("executor_kind", ["inprocess", "subprocess"])
def test_tiny_mujoco_train_then_eval(store: LocalStore, executor_kind: str) -> None:
    import torch

    executor = make_executor(executor_kind)
    spec = train_spec(store, backend="mujoco", max_iterations=2, settings=TINY_MUJOCO)
    trained = executor.execute(spec)
    assert isinstance(trained, TrainJobResult)
    assert trained.warning is None
    assert trained.checkpoint_uri == store.uri(best_key())
    assert trained.last_checkpoint_uri == store.uri(
        layout.last_checkpoint_key(RUN, EXPERT, ITERATION)
    )
    assert trained.metrics["iterations"] == 2.0
    checkpoint = Path(trained.checkpoint_uri)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert "actor_state_dict" in state
    tb_prefix = layout.train_log_prefix(RUN, EXPERT, ITERATION)
    assert any(key.startswith(tb_prefix + "events.out.tfevents") for key in store.list(tb_prefix))

    evaluation = parse_job_spec(
        eval_spec_dict(
            store.root,
            trained.checkpoint_uri,
            backend="mujoco",
            num_episodes=1,
            start_difficulty=10,
            settings=TINY_MUJOCO,
        )
    )
    scored = executor.execute(evaluation)
    assert isinstance(scored, EvalJobResult)
    assert scored.expert_id == 1
    assert len(scored.levels) == 3  # one level per design
    # one episode moves a level by at most one step from the start difficulty
    assert all(level in (9, 10, 11) for level in scored.levels)


# --- thread policy (pec.jobs.threads) -------------------------------------------------------------


def test_thread_policy_shares_the_cores_between_jobs_in_flight() -> None:
    from pec.jobs.threads import thread_env
    from pec.runs.config import build_config
    from pec.runs.threads import job_threads

    assert job_threads(None, 2, cores=16) == 8
    assert job_threads(None, 3, cores=2) == 1
    assert job_threads(4, 2, cores=16) == 4  # the config's threads_per_job wins
    assert thread_env(3)["OMP_NUM_THREADS"] == "3" and thread_env(None) == {}
    cfg = build_config({"K": 2, "max_parallel_experts": 4, "threads_per_job": 5})
    assert cfg.experts_in_flight == 2 and cfg.job_threads(cfg.experts_in_flight) == 5
    with pytest.raises(ConfigError, match="threads_per_job"):
        build_config({"threads_per_job": 0})


def test_in_process_job_runs_with_the_specs_torch_threads(
    store: LocalStore, doubles_env: None
) -> None:
    import torch

    before = torch.get_num_threads()
    spec = train_spec(store, threads=3, settings={"report_threads": True})
    result = InProcessExecutor().execute(spec)
    assert isinstance(result, TrainJobResult)
    assert result.metrics["torch_threads"] == 3.0
    assert torch.get_num_threads() == before  # restored for the caller


def test_subprocess_job_environment_carries_the_thread_policy(store: LocalStore) -> None:
    spec = train_spec(store, threads=3, settings={"report_threads": True})
    result = SubprocessExecutor(env=DOUBLES_ENV).execute(spec)
    assert isinstance(result, TrainJobResult)
    assert result.metrics["omp_num_threads"] == 3.0
    assert result.metrics["openblas_num_threads"] == 3.0
    assert result.metrics["torch_threads"] == 3.0


def test_docker_job_environment_carries_the_thread_policy(store: LocalStore) -> None:
    expected = TrainJobResult(checkpoint_uri="/s/best.pt", log_uri="/s/tb/")
    client = FakeDockerClient(log_chunks=[b"done"], result=expected.model_dump(mode="json"))
    docker_executor(client).execute(train_spec(store, threads=2))
    (container,) = client.containers.created
    env = container.kwargs["environment"]
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "2"
