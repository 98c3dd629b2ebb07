"""IsaacLabBackend end to end on real Isaac Lab 3.0 (kit-less Newton on the CPU).

PPO, checkpoints, an interrupted run resuming from model_last.pt, evaluation, level probes,
then the step CLI and the `pec` flow with `--set backend=isaaclab` and nothing else changed.
Budgets are tiny (4 envs, a few iterations): these tests prove the wiring, not learning
(see benchmarks/bench_isaaclab.py for that).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pec.backends.ballu.design_inputs import design_inputs_pinned
from pec.backends.base import Backend, EvalRequest, ProbeRequest, TrainRequest
from pec.backends.isaaclab import IsaacLabBackend
from pec.backends.mujoco.backend import BEST_NAME, LAST_NAME, load_checkpoint
from pec.backends.registry import get_backend
from pec.errors import ConfigError, InputError
from pec.presentation.cli import main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
SMALL: dict[str, object] = {
    "task": {"episode_steps": 12, "curriculum_warmup_iterations": 0},
    "ppo": {
        "num_steps_per_env": 8,
        "num_mini_batches": 1,
        "num_learning_epochs": 1,
        "actor_hidden_dims": [16, 16],
        "critic_hidden_dims": [16, 16],
        "save_interval": 1,
        "design_inputs": "fixed",
    },
}


def _request(work: Path, iters: int, **kw: object) -> TrainRequest:
    args: dict[str, object] = {
        "gcr": np.array([0.78, 0.82, 0.85, 0.88]),
        "spcf": np.array([0.002, 0.004, 0.006, 0.008]),
        "start_level": 2,
        "max_iterations": iters,
        "seed": 1,
        "device": "cpu",
        "work_dir": work,
        "settings": SMALL,
    }
    args.update(kw)
    return TrainRequest(**args)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_registry_builds_the_backend() -> None:
    backend: Backend = get_backend("isaaclab")
    assert isinstance(backend, IsaacLabBackend) and backend.name == "isaaclab"


def test_missing_extra_is_one_line_naming_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    import pec.backends.isaaclab.backend as backend_module

    real = importlib.util.find_spec
    hidden = {"isaaclab", "newton"}  # as on a machine that ran only `bash scripts/setup.sh`
    monkeypatch.setattr(
        backend_module.importlib.util,
        "find_spec",
        lambda name, *a: None if name in hidden else real(name, *a),
    )
    store = tmp_path / "store"
    common = ["--run_name", "noextra", "--store", str(store)]
    sets = ["--set", "backend=isaaclab", "--set", "device=cpu"]
    assert main(["init", *common, "--config", str(TINY), *sets]) == 0
    capsys.readouterr()
    assert main(["train-expert", *common, "--expert_id", "0", "--dl", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bash scripts/setup.sh isaaclab" in err[0], err
    assert "Traceback" not in err[0]
    assert not (store / "noextra/checkpoints/expert_0/iter_0/model_best.pt").exists()


def test_pec_run_with_an_explicit_cuda_device_on_a_cpu_machine_says_so_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():  # pragma: no cover - GPU hosts train on cuda:0
        return
    store = tmp_path / "store"
    args = ["run", "--run_name", "nocuda", "--store", str(store), "--config", str(TINY)]
    assert main([*args, "--set", "backend=isaaclab", "--set", "device=cuda:0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs CUDA" in err[0] and "--set device=cpu" in err[0], err
    assert not (store / "nocuda").exists()  # nothing written, not even the state


def test_physx_without_isaac_sim_is_one_clear_error(tmp_path: Path) -> None:
    settings = {**SMALL, "physics": "physx"}
    with pytest.raises(ConfigError, match=r"physx.*needs Isaac Sim.*physics: newton"):
        IsaacLabBackend().train(_request(tmp_path, 1, settings=settings))
    assert not (tmp_path / LAST_NAME).exists()


def test_bad_designs_and_levels_are_refused_by_the_shared_loop(tmp_path: Path) -> None:
    backend = IsaacLabBackend()
    with pytest.raises(InputError, match="NaN/inf"):
        backend.train(_request(tmp_path, 1, gcr=np.array([0.8, np.inf, 0.85, 0.88])))
    with pytest.raises(InputError, match=r"start_level=-1 is outside \[0, 74\]"):
        backend.train(_request(tmp_path, 1, start_level=-1))
    assert list(tmp_path.iterdir()) == []


def test_cuda_device_on_a_cpu_machine_is_one_clear_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():  # pragma: no cover - GPU hosts run it for real
        return
    with pytest.raises(ConfigError, match=r"needs CUDA.*--set device=cpu"):
        IsaacLabBackend().train(_request(tmp_path, 1, device="cuda:0"))


def test_train_interrupt_resume_evaluate_and_probe(tmp_path: Path) -> None:
    backend = IsaacLabBackend()
    work = tmp_path / "first"
    seen: list[int] = []
    written: list[Path] = []

    def stop_after_two(it: int, total: int, metrics: dict[str, float]) -> None:
        seen.append(it)
        assert total == 4 and np.isfinite(metrics["mean_reward"])
        if it == 2:
            raise KeyboardInterrupt  # what pec.jobs turns SIGTERM into

    with pytest.raises(KeyboardInterrupt):
        backend.train(_request(work, 4), on_progress=stop_after_two, on_checkpoint=written.append)
    assert seen == [1, 2]
    last = load_checkpoint(work / LAST_NAME)
    assert last["iter"] == 2 and {"actor_state_dict", "critic_state_dict"} <= set(last)
    assert last["infos"]["settings"]["ppo"]["actor_hidden_dims"] == [16, 16]
    # ppo.design_inputs: fixed reads the design through the box normalisation here too
    assert design_inputs_pinned(last["actor_state_dict"])
    assert design_inputs_pinned(last["critic_state_dict"])
    assert float(last["actor_state_dict"]["obs_normalizer._std"][0, 0]) != 1.0
    assert (work / BEST_NAME).is_file() and work / LAST_NAME in written

    # warm start from the interrupted run: the iteration counter continues
    resumed = backend.train(_request(tmp_path / "second", 1, resume_checkpoint=work / LAST_NAME))
    assert resumed.metrics["iterations"] == 3.0
    assert load_checkpoint(resumed.last_checkpoint)["iter"] == 3
    assert np.isfinite(resumed.metrics["mean_level"])

    three_designs = EvalRequest(
        checkpoint=resumed.best_checkpoint,
        gcr=np.array([0.80, 0.86, 0.88]),
        spcf=np.array([0.003, 0.005, 0.009]),
        num_episodes=2,
        start_difficulty=3,
        seed=0,
        device="cpu",
        settings={"task": {"episode_steps": 12}},
    )
    levels = backend.evaluate(three_designs)
    assert len(levels) == 3 and all(isinstance(v, int) for v in levels)
    # a 0.6 s episode cannot carry the robot 1 m: every design drops two levels
    assert levels == [1, 1, 1]

    passed = backend.probe_levels(
        ProbeRequest(
            checkpoint=resumed.best_checkpoint,
            gcr=np.array([0.80, 0.86]),
            spcf=np.array([0.003, 0.005]),
            levels=np.array([0, 30]),
            seed=0,
            device="cpu",
            settings={"task": {"episode_steps": 12, "promote_x": -1.0, "demote_x": -2.0}},
        )
    )
    # promote_x = -1 m: standing still passes, whatever the level
    assert passed == [True, True]

    # the other direction of the cross-simulator warm start: the Isaac Lab checkpoint (its
    # settings carry Isaac Lab's own `physics` and `newton` sections) plays on MuJoCo
    assert {"physics", "newton"} <= set(
        load_checkpoint(resumed.best_checkpoint)["infos"]["settings"]
    )
    mujoco = get_backend("mujoco")
    assert mujoco.evaluate(three_designs) == [1, 1, 1]
    # ... while a request's own Isaac Lab section is still refused by MuJoCo in one line
    with pytest.raises(ConfigError, match="physics"):
        mujoco.evaluate(replace(three_designs, settings={"physics": "newton"}))


def test_cli_train_expert_and_evaluate_frontier(tmp_path: Path) -> None:
    """No `device` set: `auto` resolves inside each job, to cpu on a machine without CUDA."""
    store = tmp_path / "store"
    common = ["--run_name", "il", "--store", str(store)]
    assert main(["init", *common, "--config", str(TINY), "--set", "backend=isaaclab"]) == 0
    assert "device: auto" in (store / "il/pec_config.yaml").read_text()
    for k in (0, 1):
        assert main(["train-expert", *common, "--expert_id", str(k), "--dl", "0"]) == 0
    result = json.loads((store / "il/checkpoints/expert_0/iter_0/result.json").read_text())
    assert result["metrics"]["iterations"] == 2.0
    assert result["metrics"]["device_cuda"] == float(torch.cuda.is_available())
    assert (store / "il/checkpoints/expert_1/iter_0/model_best.pt").is_file()
    assert (store / "il/checkpoints/expert_1/iter_0/model_last.pt").is_file()
    assert main(["evaluate-frontier", *common]) == 0
    scores = json.loads((store / "il/frontier_evals/iter_0/scores.json").read_text())
    assert len(scores["scores"]) == 2
    assert all(len(row) == 4 and all(0 <= v <= 74 for v in row) for row in scores["scores"])


@pytest.mark.usefixtures("prefect_harness")
def test_pec_flow_one_iteration_on_isaaclab(tmp_path: Path) -> None:
    from flows.pec_flow import pec_flow

    store = str(tmp_path / "store")
    overrides = {"backend": "isaaclab"}  # device `auto`: cpu here
    summary = pec_flow(
        run_name="ilflow", store=store, config=str(TINY), overrides=overrides, chain=False
    )
    assert summary["iteration"] == 0
    assert summary["experts"] == {"0": "trained", "1": "trained"}
    root = tmp_path / "store" / "ilflow"
    scores = json.loads((root / "frontier_evals/iter_0/scores.json").read_text())
    assert len(scores["scores"]) == 2 and all(len(row) == 4 for row in scores["scores"])
    for k in (0, 1):
        ckpt = load_checkpoint(root / f"checkpoints/expert_{k}/iter_0/model_best.pt")
        assert ckpt["infos"]["settings"]["physics"] == "newton"
