"""`pec distill`: a student imitates the experts (DAgger) on real MuJoCo, through the job layer.

Two tiny experts are trained for real; the student is distilled from them by the driver with
the in-process runner of `pec run`, exported in the bundle and refused bad inputs. A 3-D run
(GCR x spcf x leg) distils the same way, its student seeing the leg length too.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from support.trained_experts import give_experts_checkpoints

from pec.backends.base import TrainRequest
from pec.backends.mujoco.backend import MujocoBackend, build_actor, load_checkpoint, parse_settings
from pec.backends.mujoco.env import BalluVecEnv
from pec.errors import ConfigError, InputError, StateError
from pec.evaluation.distill import (
    distill_record_key,
    distill_student,
    evaluate_student,
    label_designs,
    read_student_eval,
    stage_designs,
    stage_dir,
    stage_leg_samples_key,
    stage_samples_keys,
    student_eval_key,
)
from pec.iteration.run_setup import initialise_run
from pec.jobs.plan import local_runner
from pec.jobs.spec import StoreSpec, parse_job_spec
from pec.maths.seeds import derive_seed
from pec.runs import layout
from pec.runs.config import build_config
from pec.runs.run import Run, make_run
from pec.runs.state import PECState
from pec.runs.store import LocalStore
from pec.runs.store.npy import load_npy, npy_bytes

RUN = "distil"
CENTRES = [[0.78, 0.003], [0.86, 0.008]]
CENTRES_3D = [[0.78, 0.003, 0.28], [0.86, 0.008, 0.42]]  # (GCR, spcf, leg m)
LEG_RANGE = [0.20, 0.48]
TINY: dict[str, object] = {
    "task": {"episode_steps": 40},
    "ppo": {
        "num_steps_per_env": 8,
        "num_mini_batches": 4,
        "num_learning_epochs": 5,
        "actor_hidden_dims": [32, 32],
        "critic_hidden_dims": [16, 16],
    },
}
ROLLOUT = 8
# sha256[:16] of stage 0's gcr.npy and spcf.npy (seed 0, 8 envs) written by the code before
# distillation took any d (computed with main at 2bafb1c)
GOLDEN_STAGE_0 = ["373e98aa95b06c2d", "1d37a8503da9e0ad"]


def tiny_run(
    root: Path, trained: bool = True, legs: bool = False
) -> tuple[Run, PECState, list[Path]]:
    """A K=2 run whose experts are trained for real (2 PPO iterations each) when `trained`;
    with `legs` a 3-D run (leg_range set), its experts trained on their own leg lengths."""
    store = LocalStore(root / "store")
    raw: dict[str, object] = {
        "K": 2,
        "centers": CENTRES_3D if legs else CENTRES,
        "N_init": 4,
        "num_envs": 8,
        "backend_settings": TINY,
    }
    if legs:
        raw["leg_range"] = LEG_RANGE
    run = make_run(store, StoreSpec(location=store.root_uri), RUN, build_config(raw))
    state, version, _ = initialise_run(run)
    if not trained:
        return run, state, []
    torch.set_num_threads(1)
    files: list[Path] = []
    rng = np.random.default_rng(1)
    for k, centre in enumerate(CENTRES_3D if legs else CENTRES):
        gcr, spcf = centre[0], centre[1]
        outcome = MujocoBackend().train(
            TrainRequest(  # designs around the centre, as PEC samples them from a Gaussian
                gcr=gcr + rng.uniform(-0.03, 0.03, 8),
                spcf=spcf + rng.uniform(-0.002, 0.002, 8),
                leg=centre[2] + rng.uniform(-0.04, 0.04, 8) if legs else None,
                start_level=0,
                max_iterations=2,
                seed=10 + k,
                device="cpu",
                work_dir=root / f"work_{k}",
                settings=TINY,
            )
        )
        files.append(outcome.best_checkpoint)
    return run, give_experts_checkpoints(store, RUN, state, version, files), files


@pytest.fixture(scope="module")
def experts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, PECState, list[Path]]:
    return tiny_run(tmp_path_factory.mktemp("distill"))


def teacher_states(
    teachers: list[Path], gcr: np.ndarray, spcf: np.ndarray, index: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Observations visited by the teachers themselves (their own rollouts), and their labels."""
    settings = parse_settings(TINY)
    env = BalluVecEnv(
        gcr.size, settings.task, gcr_values=gcr, spcf_values=spcf, seed=99, eval_mode=True
    )
    actors = []
    for path in teachers:
        actor = build_actor(env, settings.ppo, "cpu")
        actor.load_state_dict(load_checkpoint(path)["actor_state_dict"])
        actors.append(actor.eval())
    rows = torch.arange(gcr.size)
    chosen = torch.as_tensor(index)
    obs_list, labels = [], []
    obs = env.get_observations()
    with torch.inference_mode():
        for _ in range(60):
            label = torch.stack([a(obs) for a in actors])[chosen, rows]
            obs_list.append(obs["policy"].clone())
            labels.append(label.clone())
            obs, _, _, _ = env.step(label)
    return torch.cat(obs_list), torch.cat(labels)


def action_error(checkpoint: Path, obs: torch.Tensor, labels: torch.Tensor) -> float:
    settings = parse_settings(TINY)
    env = BalluVecEnv(2, settings.task)
    actor = build_actor(env, settings.ppo, "cpu")
    actor.load_state_dict(load_checkpoint(checkpoint)["actor_state_dict"])
    from tensordict import TensorDict

    with torch.inference_mode():
        out = actor.eval()(TensorDict({"policy": obs}, batch_size=[obs.shape[0]]))
    return float(torch.mean((out - labels) ** 2))


def test_the_student_imitates_its_teachers(
    experts: tuple[Run, PECState, list[Path]], tmp_path: Path
) -> None:
    """Its action error on the teachers' own states falls with more imitation rounds."""
    _, _, teachers = experts
    rng = np.random.default_rng(0)
    gcr, spcf = rng.uniform(0.75, 0.89, 16), rng.uniform(0.001, 0.01, 16)
    index = (spcf > 0.0055).astype(np.int64)
    errors: dict[int, float] = {}
    progress: list[float] = []
    for rounds in (1, 10):
        outcome = MujocoBackend().train(
            TrainRequest(
                gcr=gcr,
                spcf=spcf,
                start_level=0,
                max_iterations=rounds,
                seed=3,
                device="cpu",
                work_dir=tmp_path / f"student_{rounds}",
                settings=TINY,
                teachers=tuple(teachers),
                teacher_index=index,
            ),
            on_progress=lambda i, n, m: progress.append(m["imitation_loss"]),
        )
        held_out = teacher_states(teachers, gcr[::-1].copy(), spcf[::-1].copy(), index[::-1].copy())
        errors[rounds] = action_error(outcome.last_checkpoint, *held_out)
        assert outcome.metrics["teacher_share"] == 0.5 ** (rounds - 1)
    labels = held_out[1]
    # better after ten rounds than after one, and most of the teachers' actions explained
    assert errors[10] < 0.6 * errors[1], errors
    assert errors[10] < 0.3 * float(torch.mean(labels**2)), errors
    # on the student's own states too: the ten-round job's error before its first fit and
    # before its last
    assert progress[-1] < 0.3 * progress[1], progress


def test_distill_driver_records_steps_reuses_stages_and_exports(
    experts: tuple[Run, PECState, list[Path]], tmp_path: Path
) -> None:
    run, state, _ = experts
    record = distill_student(
        run, state, local_runner(run.config), iterations=3, finetune_iterations=2, num_envs=8
    )
    assert record["env_steps"] == (3 + 2) * 8 * ROLLOUT
    assert [s["kind"] for s in record["stages"]] == ["imitation", "ppo_finetune"]
    assert record["checkpoint"] == run.store.uri(stage_dir(RUN, 1) + "model_best.pt")
    labels = load_npy(run.store.read_bytes(stage_samples_keys(RUN, 0)[2]))
    assert sorted(set(labels.tolist())) <= [0, 1]
    assert record["label_share"] == [float(np.mean(labels == k)) for k in (0, 1)]
    # the scratch folder of the student's jobs is emptied into distill/
    assert not run.store.list(layout.checkpoint_dir(RUN, len(state.experts) + 1, 0))
    stored = json.loads(run.store.read_bytes(distill_record_key(RUN)))
    assert stored == record
    # finished stages are reused: nothing is trained again
    again = distill_student(
        run, state, local_runner(run.config), iterations=3, finetune_iterations=2, num_envs=8
    )
    assert again["stages"] == record["stages"]
    # the bundle exports the student like an expert, and it loads with the same actions
    from pec.evaluation.bundle import load_bundle
    from pec.evaluation.bundle_export import export_bundle
    from pec.evaluation.checkpoint_actor import actor_actions, load_actor

    manifest = export_bundle(run.store, state, tmp_path / "bundle")
    data = json.loads(manifest.read_text())
    assert data["student"]["env_steps"] == record["env_steps"]
    local = tmp_path / "student.pt"
    run.store.download_file(run.store.key_for_uri(record["checkpoint"]), local)
    obs = np.random.default_rng(0).normal(size=(5, data["obs_dim"])).astype(np.float32)
    expected = actor_actions(load_actor(local), obs)
    for runtime in ("torchscript", "onnx"):
        bundle = load_bundle(tmp_path / "bundle", runtime=runtime)
        assert bundle.student is not None
        np.testing.assert_allclose(bundle.student.actions(obs), expected, atol=1e-4)


def test_report_scores_the_student_beside_the_experts(
    experts: tuple[Run, PECState, list[Path]],
) -> None:
    from pec.evaluation.comparison import comparison_numbers, comparison_rows, load_report_data
    from pec.evaluation.designs_file import uniform_designs
    from pec.evaluation.final_eval_driver import run_final_eval

    run, state, _ = experts
    runner = local_runner(run.config)
    distill_student(run, state, runner, iterations=3, finetune_iterations=2, num_envs=8)
    designs = uniform_designs(run.space, 4, 7)
    run_final_eval(run, state, designs, "four", runner, num_episodes=1, start_difficulty=0)
    payload = evaluate_student(
        run, state, designs, "four", runner, num_episodes=1, start_difficulty=0
    )
    assert payload["protocol"]["score"] == run.config.score
    numbers = comparison_numbers(load_report_data(run.store, RUN, "four"))
    assert numbers["student_mean"] == float(np.mean(payload["levels"]))
    policies = [row["policy"] for row in comparison_rows(numbers)]
    assert "distilled student" in policies and "PEC oracle" in policies
    # a second call reuses the stored result (same protocol, checkpoint and designs)
    again = evaluate_student(
        run, state, designs, "four", runner, num_episodes=1, start_difficulty=0
    )
    assert again == payload


def test_bad_inputs_are_refused_in_one_line(
    experts: tuple[Run, PECState, list[Path]], tmp_path: Path
) -> None:
    run, state, teachers = experts
    runner = local_runner(run.config)
    with pytest.raises(InputError, match="iterations=0"):
        distill_student(run, state, runner, iterations=0)
    with pytest.raises(InputError, match="router 'best'"):
        distill_student(run, state, runner, iterations=1, router="best")
    distill_student(run, state, runner, iterations=3, finetune_iterations=2, num_envs=8)
    with pytest.raises(StateError, match="already has distillation stage 0 with 3 iterations"):
        distill_student(run, state, runner, iterations=4, num_envs=8)
    untrained_run, untrained, _ = tiny_run(tmp_path / "untrained", trained=False)
    with pytest.raises(StateError, match="expert 0 has no checkpoint"):
        distill_student(untrained_run, untrained, local_runner(untrained_run.config), iterations=1)
    with pytest.raises(InputError, match=r"teacher_index must lie in \[0, 1\]"):
        MujocoBackend().train(
            TrainRequest(
                gcr=np.full(2, 0.8),
                spcf=np.full(2, 0.005),
                start_level=0,
                max_iterations=1,
                seed=0,
                device="cpu",
                work_dir=tmp_path / "bad",
                teachers=tuple(teachers),
                teacher_index=np.array([0, 2]),
            )
        )
    spec = {
        "kind": "train",
        "backend": "mujoco",
        "store": {"location": str(tmp_path)},
        "run_name": RUN,
        "expert_id": 3,
        "iteration": 0,
        "samples_gcr_key": "g",
        "samples_spcf_key": "s",
        "start_level": 0,
        "max_iterations": 1,
        "num_envs": 2,
        "seed": 0,
        "timeout_s": 1.0,
        "teacher_checkpoint_uris": ["x"],
    }
    with pytest.raises(ConfigError, match="go together"):
        parse_job_spec(spec)
    # the command: one line, exit 2, nothing written
    store_root = Path(run.store.root_uri)
    before = sorted(run.store.list(""))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pec.presentation.cli",
            "distill",
            "--run_name",
            RUN,
            "--store",
            str(store_root),
            "--iterations",
            "0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "--iterations 0" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(run.store.list("")) == before


# ---------------------------------------------------------------- stage designs, any d


def test_2d_stage_designs_are_the_draws_of_before(tmp_path: Path) -> None:
    """A 2-D run's stage designs (and the bytes of their .npy files) are what pec drew before
    distillation took any d: numpy's uniform draw over the box from the stage's seed."""
    run, _, _ = tiny_run(tmp_path, trained=False)
    assert run.space.bounds == [(0.75, 0.89), (0.001, 0.010)]
    for stage in (0, 1):
        rng = np.random.default_rng(derive_seed(run.config.seed, "distill-samples", stage))
        before = rng.uniform([0.75, 0.001], [0.89, 0.010], size=(8, 2)).astype(np.float32)
        columns = stage_designs(run, stage, 8)
        assert len(columns) == 2
        for axis, column in enumerate(columns):
            assert column.dtype == np.float32 and column.flags.c_contiguous
            assert npy_bytes(column) == npy_bytes(before[:, axis].copy())
    # the files of stage 0 for seed 0 and 8 environments, as the code before wrote them
    digests = [hashlib.sha256(npy_bytes(c)).hexdigest()[:16] for c in stage_designs(run, 0, 8)]
    assert digests == GOLDEN_STAGE_0, digests


@pytest.fixture(scope="module")
def experts_3d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, PECState, list[Path]]:
    return tiny_run(tmp_path_factory.mktemp("distill3d"), legs=True)


def test_a_3d_run_distils_a_student_that_sees_the_leg_and_is_scored(
    experts_3d: tuple[Run, PECState, list[Path]], tmp_path: Path
) -> None:
    from pec.evaluation.designs_file import uniform_designs

    run, state, _ = experts_3d
    assert run.space.axes == ("gcr", "spcf", "leg")
    runner = local_runner(run.config)
    record = distill_student(run, state, runner, iterations=2, finetune_iterations=1, num_envs=6)
    assert record["env_steps"] == (2 + 1) * 6 * ROLLOUT
    assert [s["kind"] for s in record["stages"]] == ["imitation", "ppo_finetune"]
    # every stage drew its own designs over all three axes; the leg lengths are in the box
    for stage in (0, 1):
        gcr_key, spcf_key, _ = stage_samples_keys(RUN, stage)
        stored = [
            load_npy(run.store.read_bytes(key))
            for key in (gcr_key, spcf_key, stage_leg_samples_key(RUN, stage))
        ]
        for got, want in zip(stored, stage_designs(run, stage, 6), strict=True):
            np.testing.assert_array_equal(got, want)
        assert np.all((stored[2] >= LEG_RANGE[0]) & (stored[2] <= LEG_RANGE[1]))
        assert len(np.unique(stored[2])) == 6
    # the teachers are routed over all three axes: nearest centre in the unit cube, leg included
    columns = stage_designs(run, 0, 6)
    unit = run.space.normalize(np.stack(columns, 1).astype(np.float64))
    centres = run.space.normalize(np.array(CENTRES_3D))
    nearest = np.argmin(((unit[:, None, :] - centres[None]) ** 2).sum(-1), 1)
    labels = load_npy(run.store.read_bytes(stage_samples_keys(RUN, 0)[2]))
    np.testing.assert_array_equal(labels, nearest)  # no evidence yet: score-informed falls back
    assert record["label_share"] == [float(np.mean(labels == k)) for k in (0, 1)]
    # halfway between the centres in GCR and spcf, the leg length decides the teacher
    for leg, teacher in ((0.28, 0), (0.42, 1)):
        columns = (np.float32([0.82]), np.float32([0.0055]), np.float32([leg]))
        routed, _ = label_designs(run, state, columns, "nearest_centre")
        assert routed.tolist() == [teacher]
    # the student sees the same 30 inputs as its teachers (29 + the leg length)
    local = tmp_path / "student.pt"
    run.store.download_file(run.store.key_for_uri(record["checkpoint"]), local)
    student = load_checkpoint(local)["actor_state_dict"]["mlp.0.weight"]
    assert student.shape[1] == 30
    teacher = load_checkpoint(experts_3d[2][0])["actor_state_dict"]["mlp.0.weight"]
    assert teacher.shape[1] == 30
    # and it is scored on 3-D designs with the experts' protocol; the scores are stored
    designs = uniform_designs(run.space, 3, 5)
    payload = evaluate_student(
        run, state, designs, "three", runner, num_episodes=1, start_difficulty=0
    )
    assert len(payload["levels"]) == 3
    assert run.store.exists(student_eval_key(RUN, "three"))
    assert read_student_eval(run, "three") == payload
    # the bundle ships it beside the 3-D experts: one robot interface, 30 observations
    from pec.evaluation.bundle_export import export_bundle

    manifest = json.loads(export_bundle(run.store, state, tmp_path / "bundle").read_text())
    assert manifest["obs_dim"] == 30 and manifest["student"]["env_steps"] == record["env_steps"]
