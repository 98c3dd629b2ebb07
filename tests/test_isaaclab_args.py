"""Isaac Lab backend: argv/env building, stdout protocol parsing, settings validation.

The Isaac Sim scripts themselves run only in the GPU image; here a small fake script speaks
the same stdout protocol so the crash rule and the result parsing are exercised for real.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pec.backends.base import EvalRequest, TrainRequest
from pec.backends.isaaclab import IsaacLabBackend, IsaacLabSettings, load_settings
from pec.backends.isaaclab.args import (
    build_eval_command,
    build_train_command,
    find_checkpoints,
    frontier_designs,
    parse_exp_dir,
    parse_frontier_results,
    parse_mean_reward,
    parse_progress,
)
from pec.errors import ConfigError, InputError, JobError

USD = "morphologies/ballu/robot.usd"


def settings(**kw: object) -> IsaacLabSettings:
    return load_settings(None, {"usd_rel_path": USD, **kw})


def train_request(tmp_path: Path, n: int = 3, resume: Path | None = None) -> TrainRequest:
    return TrainRequest(
        gcr=np.linspace(0.76, 0.80, n),
        spcf=np.linspace(0.002, 0.004, n),
        start_level=4,
        max_iterations=500,
        seed=7,
        device="cuda:0",
        work_dir=tmp_path / "work",
        resume_checkpoint=resume,
    )


def eval_request(checkpoint: Path, n: int = 2, **settings_kw: object) -> EvalRequest:
    return EvalRequest(
        checkpoint=checkpoint,
        gcr=np.array([0.80, 0.85][:n]),
        spcf=np.array([0.003, 0.006][:n]),
        num_episodes=20,
        start_difficulty=28,
        seed=3,
        device="cuda:0",
        settings={"usd_rel_path": USD, **settings_kw},
    )


def value_after(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, f"{flag} must appear exactly once in {argv}"
    return argv[argv.index(flag) + 1]


# --- argv / env -------------------------------------------------------------------------


def test_train_argv_iteration_zero_has_no_resume(tmp_path: Path) -> None:
    req = train_request(tmp_path, n=3)
    cmd = build_train_command(req, settings(), Path("/s/gcr.npy"), Path("/s/spcf.npy"))
    assert cmd.argv[:3] == [
        "/workspace/isaaclab/isaaclab.sh",
        "-p",
        "/workspace/isaaclab/scripts/reinforcement_learning/rsl_rl/train.py",
    ]
    assert value_after(cmd.argv, "--task") == "Isaac-Vel-BALLU-Obstacle-v0"
    assert value_after(cmd.argv, "--num_envs") == "3"
    assert value_after(cmd.argv, "--dl") == "4"
    assert value_after(cmd.argv, "--seed") == "7"
    assert value_after(cmd.argv, "--max_iterations") == "500"
    assert value_after(cmd.argv, "--device") == "cuda:0"
    assert value_after(cmd.argv, "--GCR_samples_file") == "/s/gcr.npy"
    assert value_after(cmd.argv, "--spcf_samples_file") == "/s/spcf.npy"
    assert "--resume_path" not in cmd.argv
    assert cmd.argv[-1] == "--headless"
    assert cmd.cwd == tmp_path / "work"


def test_train_argv_warm_start_and_not_headless(tmp_path: Path) -> None:
    ckpt = tmp_path / "prev" / "model_best.pt"
    req = train_request(tmp_path, n=5, resume=ckpt)
    cmd = build_train_command(
        req,
        settings(headless=False, train_script="/opt/ballu/train.py", extra_train_args=["--x"]),
        Path("g.npy"),
        Path("s.npy"),
    )
    assert value_after(cmd.argv, "--resume_path") == str(ckpt)
    assert value_after(cmd.argv, "--num_envs") == "5"
    assert "/opt/ballu/train.py" in cmd.argv
    assert "--headless" not in cmd.argv
    assert cmd.argv[-1] == "--x"


def test_usd_path_is_injected_as_env_never_as_argument(tmp_path: Path) -> None:
    cmd = build_train_command(
        train_request(tmp_path), settings(env={"OMNI_KIT_ACCEPT_EULA": "YES"}), Path("g"), Path("s")
    )
    assert cmd.env == {"BALLU_USD_REL_PATH": USD, "OMNI_KIT_ACCEPT_EULA": "YES"}
    assert not any(USD in a for a in cmd.argv)


def test_missing_usd_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="usd_rel_path"):
        build_train_command(train_request(tmp_path), IsaacLabSettings(), Path("g"), Path("s"))


def test_mismatched_samples_are_rejected(tmp_path: Path) -> None:
    bad = TrainRequest(
        gcr=np.array([0.8, 0.81]),
        spcf=np.array([0.003]),
        start_level=0,
        max_iterations=1,
        seed=0,
        device="cpu",
        work_dir=tmp_path,
    )
    with pytest.raises(InputError, match="equal length"):
        build_train_command(bad, settings(), Path("g"), Path("s"))


def test_eval_argv(tmp_path: Path) -> None:
    req = eval_request(tmp_path / "model_best.pt")
    cmd = build_eval_command(
        req, settings(), tmp_path / "f.json", tmp_path / "o.json", tmp_path / "w"
    )
    assert cmd.argv[2] == "/workspace/isaaclab/scripts/pec/pec_eval_expert_frontier.py"
    assert value_after(cmd.argv, "--checkpoint_path") == str(tmp_path / "model_best.pt")
    assert value_after(cmd.argv, "--frontier_file") == str(tmp_path / "f.json")
    assert value_after(cmd.argv, "--output") == str(tmp_path / "o.json")
    assert value_after(cmd.argv, "--num_envs") == "2"
    assert value_after(cmd.argv, "--num_episodes") == "20"
    assert value_after(cmd.argv, "--start_difficulty") == "28"
    assert "--resume_path" not in cmd.argv and "--headless" in cmd.argv
    assert cmd.env["BALLU_USD_REL_PATH"] == USD
    assert frontier_designs(req) == [
        {"id": 0, "GCR": 0.80, "spcf": 0.003},
        {"id": 1, "GCR": 0.85, "spcf": 0.006},
    ]


# --- stdout protocol --------------------------------------------------------------------


def test_parse_exp_dir() -> None:
    assert parse_exp_dir(["noise", "EXP_DIR: /logs/a", "  EXP_DIR:/logs/b  "]) == Path("/logs/b")
    assert parse_exp_dir(["Learning iteration 1/2", "EXP_DIRx"]) is None
    with pytest.raises(JobError, match="without a path"):
        parse_exp_dir(["EXP_DIR:   "])


def test_parse_frontier_results() -> None:
    out = ["x", "FRONTIER_RESULTS: [1, 2]", "FRONTIER_RESULTS: [12, 30.0, 0]"]
    assert parse_frontier_results(out, 3) == [12, 30, 0]
    dicts = ['FRONTIER_RESULTS: [{"id": 0, "final_level": 5}, {"final_level": 9}]']
    assert parse_frontier_results(dicts, 2) == [5, 9]


@pytest.mark.parametrize(
    ("line", "n", "message"),
    [
        ("FRONTIER_RESULTS: [1, 2", 2, "not valid JSON"),
        ('FRONTIER_RESULTS: {"a": 1}', 1, "must be a JSON list"),
        ("FRONTIER_RESULTS: [1, 2, 3]", 2, "3 entries for 2 designs"),
        ("FRONTIER_RESULTS: [1, 2.5]", 2, "non-negative integer"),
        ("FRONTIER_RESULTS: [1, -1]", 2, "non-negative integer"),
        ('FRONTIER_RESULTS: [1, "7"]', 2, "expected a number"),
        ("FRONTIER_RESULTS: [1, true]", 2, "expected a number"),
        ("nothing here", 2, "never printed"),
    ],
)
def test_malformed_frontier_results(line: str, n: int, message: str) -> None:
    with pytest.raises(JobError, match=message):
        parse_frontier_results([line], n)


def test_progress_and_reward_lines() -> None:
    assert parse_progress("\x1b[1m Learning iteration 41/500 \x1b[0m") == (41, 500)
    assert parse_progress("Mean reward: 3.5") is None
    assert parse_mean_reward("   Mean reward:   -12.25") == -12.25
    assert parse_mean_reward("Mean episode length: 3") is None


def test_find_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="no checkpoint"):
        find_checkpoints(tmp_path)
    for name in ("model_50.pt", "model_200.pt", "model_best.pt", "model_x.pt"):
        (tmp_path / name).write_bytes(b"")
    assert find_checkpoints(tmp_path) == (tmp_path / "model_best.pt", tmp_path / "model_200.pt")
    (tmp_path / "model_best.pt").unlink()
    assert find_checkpoints(tmp_path) == (tmp_path / "model_200.pt", tmp_path / "model_200.pt")


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"taks": "x"}, "taks"),
        ({"task": ""}, "task"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"launcher": []}, "launcher"),
        ({"env": {"BALLU_USD_REL_PATH": "x.usd"}}, "env"),
        ({"extra_train_args": ["--num_envs=4"]}, "extra_train_args"),
        ({"headless": "sometimes"}, "headless"),
    ],
)
def test_settings_validation_names_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"isaaclab settings: {field}"):
        load_settings(None, overrides)


def test_request_overrides_merge_onto_backend_settings() -> None:
    base = IsaacLabSettings(task="Base-v0", experiment_name="exp")
    merged = load_settings(base, {"usd_rel_path": USD, "headless": False})
    assert (merged.task, merged.experiment_name, merged.headless) == ("Base-v0", "exp", False)
    assert merged.usd_rel_path == USD


def test_importing_the_backend_does_not_import_isaac() -> None:
    code = (
        "import sys, pec.backends.isaaclab, pec.backends.isaaclab.args;"
        "bad = [m for m in sys.modules if m.split('.')[0] in {'isaaclab', 'isaacsim', 'omni'}];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the backend against a fake Isaac script -----------------------------------------------

FAKE_TRAIN = textwrap.dedent(
    """
    import argparse, os, pathlib, sys
    import numpy as np
    p = argparse.ArgumentParser()
    for a in ("--task", "--num_envs", "--seed", "--max_iterations", "--device",
              "--experiment_name", "--run_name", "--GCR_samples_file", "--spcf_samples_file",
              "--dl", "--resume_path"):
        p.add_argument(a)
    p.add_argument("--headless", action="store_true")
    a = p.parse_args()
    gcr = np.load(a.GCR_samples_file)
    assert gcr.shape == (int(a.num_envs),), gcr.shape
    assert os.environ["BALLU_USD_REL_PATH"] == "morphologies/ballu/robot.usd"
    mode = os.environ["FAKE_MODE"]
    if mode == "early_crash":
        sys.exit(3)
    exp = pathlib.Path("logs/rsl_rl") / a.experiment_name / a.run_name
    exp.mkdir(parents=True)
    print("EXP_DIR:", exp, flush=True)
    for it in range(int(a.max_iterations)):
        print(f"Learning iteration {it}/{a.max_iterations}")
        print(f"Mean reward: {it + 0.5}")
        (exp / f"model_{it}.pt").write_bytes(b"x")
    (exp / "model_best.pt").write_bytes(b"b")
    sys.exit(1 if mode == "late_crash" else 0)
    """
)


def fake_backend(tmp_path: Path, mode: str) -> IsaacLabBackend:
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    return IsaacLabBackend(
        IsaacLabSettings(
            launcher=[sys.executable],
            train_script=str(script),
            usd_rel_path=USD,
            env={"FAKE_MODE": mode},
            timeout_s=60,
        )
    )


def small_train(tmp_path: Path) -> TrainRequest:
    req = train_request(tmp_path, n=4)
    return TrainRequest(**{**req.__dict__, "max_iterations": 3, "device": "cpu"})


def test_backend_train_reports_checkpoints_and_progress(tmp_path: Path) -> None:
    progress: list[tuple[int, int, dict[str, float]]] = []
    saved: list[Path] = []
    out = fake_backend(tmp_path, "ok").train(
        small_train(tmp_path), lambda i, n, m: progress.append((i, n, m)), saved.append
    )
    exp = tmp_path / "work" / "logs/rsl_rl/ballu_pec/pec"
    assert (out.best_checkpoint, out.last_checkpoint) == (exp / "model_best.pt", exp / "model_2.pt")
    assert saved == [exp / "model_2.pt", exp / "model_best.pt"]
    assert [(i, n) for i, n, _ in progress] == [(0, 3), (1, 3), (2, 3)]
    assert progress[-1][2] == {"mean_reward": 2.5}
    assert out.metrics == {"mean_reward": 2.5, "iterations": 3.0, "crashed": 0.0}
    assert np.load(tmp_path / "work" / "samples" / "gcr.npy").shape == (4,)


def test_backend_train_crash_after_exp_dir_keeps_checkpoint(tmp_path: Path) -> None:
    out = fake_backend(tmp_path, "late_crash").train(small_train(tmp_path))
    assert out.best_checkpoint.name == "model_best.pt"
    assert out.metrics["crashed"] == 1.0


def test_backend_train_crash_before_exp_dir_raises(tmp_path: Path) -> None:
    with pytest.raises(JobError, match="without printing EXP_DIR"):
        fake_backend(tmp_path, "early_crash").train(small_train(tmp_path))


def test_backend_evaluate_parses_results(tmp_path: Path) -> None:
    script = tmp_path / "fake_eval.py"
    script.write_text(
        "import argparse, json\n"
        "p = argparse.ArgumentParser()\n"
        "p.add_argument('--frontier_file'); p.add_argument('--start_difficulty', type=int)\n"
        "a, _ = p.parse_known_args()\n"
        "d = json.load(open(a.frontier_file))\n"
        "print('FRONTIER_RESULTS:', json.dumps([a.start_difficulty + x['id'] for x in d]))\n"
    )
    ckpt = tmp_path / "ckpt" / "model_best.pt"
    ckpt.parent.mkdir()
    backend = IsaacLabBackend(IsaacLabSettings(launcher=[sys.executable], eval_script=str(script)))
    assert backend.evaluate(eval_request(ckpt)) == [28, 29]


def test_backend_start_failure_is_a_job_error(tmp_path: Path) -> None:
    backend = IsaacLabBackend(IsaacLabSettings(launcher=[str(tmp_path / "no-such-isaaclab.sh")]))
    with pytest.raises(JobError, match="launcher"):
        backend.evaluate(eval_request(tmp_path / "model_best.pt"))
