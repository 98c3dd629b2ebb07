"""The policy bundle: same actions as the training checkpoint, routing, integrity checks.

Two real (tiny) MuJoCo trainings provide the checkpoints; the reference actions come from
the backend's own evaluation path (`build_actor` + `load_state_dict` on env observations).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support.trained_experts import give_experts_checkpoints

from pec.backends.base import TrainOutcome, TrainRequest
from pec.backends.mujoco import MujocoBackend
from pec.backends.mujoco.backend import build_actor, load_checkpoint, parse_settings
from pec.backends.mujoco.env import BalluVecEnv
from pec.errors import InputError
from pec.evaluation.bundle import ROUTER_TS, load_bundle
from pec.evaluation.bundle_export import export_bundle, export_tolerance
from pec.evaluation.torch_router import TorchRouter
from pec.iteration.run_setup import initialise_run
from pec.maths.design_space import DesignSpace
from pec.maths.routing import route
from pec.maths.score_routing import ScoreEvidence, route_by_scores
from pec.runs import layout
from pec.runs.config import build_config
from pec.runs.job_records import StoreSpec
from pec.runs.run import make_run, state_space
from pec.runs.state import PECState
from pec.runs.store import LocalStore

RUN = "bundle"
CENTRES = [[0.78, 0.003], [0.86, 0.008]]
SETTINGS: dict[str, object] = {"ppo": {"num_steps_per_env": 8}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, PECState, list[Path]]:
    root = tmp_path_factory.mktemp("bundle")
    store = LocalStore(root / "store")
    run = make_run(
        store,
        StoreSpec(location=store.root_uri),
        RUN,
        build_config({"K": 2, "centers": CENTRES, "N_init": 4}),
    )
    state, version, _ = initialise_run(run)
    torch.set_num_threads(1)
    checkpoints: list[Path] = []
    for k, (gcr, spcf) in enumerate(CENTRES):
        outcome = MujocoBackend().train(
            TrainRequest(
                gcr=np.full(4, gcr),
                spcf=np.full(4, spcf),
                start_level=0,
                max_iterations=2,
                seed=10 + k,
                device="cpu",
                work_dir=root / f"work_{k}",
                settings=SETTINGS,
            )
        )
        checkpoints.append(outcome.best_checkpoint)
    return store, give_experts_checkpoints(store, RUN, state, version, checkpoints), checkpoints


def reference(checkpoint: Path, gcr: float, spcf: float) -> tuple[np.ndarray, np.ndarray]:
    """Observations of a few real env steps and the checkpoint actor's actions on them."""
    ckpt = load_checkpoint(checkpoint)
    settings = parse_settings(ckpt["infos"]["settings"])
    env = BalluVecEnv(
        6,
        settings.task,
        gcr_values=np.full(6, gcr),
        spcf_values=np.full(6, spcf),
        seed=3,
        eval_mode=True,
    )
    actor = build_actor(env, settings.ppo, "cpu")
    actor.load_state_dict(ckpt["actor_state_dict"])
    actor.eval()
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.step(torch.as_tensor(rng.uniform(-1, 1, size=(6, 2)), dtype=torch.float32))
    obs = env.get_observations()
    with torch.inference_mode():
        actions = actor(obs).numpy()
    return obs["policy"].numpy().copy(), actions


@pytest.fixture(scope="module")
def bundle_dir(
    trained: tuple[LocalStore, PECState, list[Path]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    store, state, _ = trained
    out = tmp_path_factory.mktemp("export") / "bundle"
    export_bundle(store, state, out)
    return out


@pytest.mark.parametrize("runtime", ["torchscript", "onnx"])
def test_bundle_actions_equal_the_training_checkpoint(
    trained: tuple[LocalStore, PECState, list[Path]], bundle_dir: Path, runtime: str
) -> None:
    _, _, checkpoints = trained
    bundle = load_bundle(bundle_dir, runtime=runtime)  # type: ignore[arg-type]
    for k, (gcr, spcf) in enumerate(CENTRES):
        obs, expected = reference(checkpoints[k], gcr, spcf)
        assert bundle.route(gcr, spcf).tolist() == [k]
        actions = bundle.act(gcr, spcf, obs)
        assert actions.shape == expected.shape == (6, 2)
        np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-5)
        single = bundle.act(gcr, spcf, obs[0])
        np.testing.assert_allclose(single, expected[0], rtol=0, atol=1e-5)
    # the two experts really are different policies, so routing matters
    obs, _ = reference(checkpoints[0], *CENTRES[0])
    (g0, s0), (g1, s1) = CENTRES
    assert not np.allclose(bundle.act(g0, s0, obs), bundle.act(g1, s1, obs), atol=1e-3)


def test_per_row_designs_route_each_row(
    trained: tuple[LocalStore, PECState, list[Path]], bundle_dir: Path
) -> None:
    _, _, checkpoints = trained
    bundle = load_bundle(bundle_dir)
    obs, _ = reference(checkpoints[0], *CENTRES[0])
    gcr = np.array([0.77, 0.88, 0.77, 0.88, 0.8, 0.85])
    spcf = np.array([0.002, 0.009, 0.002, 0.009, 0.004, 0.007])
    mixed = bundle.act(gcr, spcf, obs)
    for i in range(6):
        np.testing.assert_allclose(mixed[i], bundle.act(gcr[i], spcf[i], obs[i]), rtol=0, atol=1e-6)
    with pytest.raises(InputError, match="one design or one per row"):
        bundle.act(gcr[:2], spcf[:2], obs)
    with pytest.raises(InputError, match=r"pass \(batch, 29\)"):
        bundle.act(0.8, 0.005, obs[:, :10])


def test_router_files_match_pec_routing(
    trained: tuple[LocalStore, PECState, list[Path]], bundle_dir: Path
) -> None:
    _, state, _ = trained
    space = state_space(state)
    designs = space.sample_uniform(300, np.random.default_rng(1))
    expected = route(designs, state.expert_mus(), space)
    bundle = load_bundle(bundle_dir)
    assert bundle.route(designs[:, 0], designs[:, 1]).tolist() == expected.tolist()
    router = torch.jit.load(str(bundle_dir / ROUTER_TS))  # type: ignore[no-untyped-call]
    assert router(torch.as_tensor(designs)).tolist() == expected.tolist()
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["obs_dim"] == 29 and manifest["action_dim"] == 2
    assert [e["id"] for e in manifest["experts"]] == [0, 1]
    for expert in manifest["experts"]:
        checks = expert["verification"]
        # the bound is float32 rounding at the actions' scale (see test_export_tolerance_*)
        assert checks["tolerance"] == export_tolerance(
            np.asarray([checks["max_abs_action"]], dtype=np.float32), layers=4
        )
        assert checks["tolerance"] < 1e-4 * max(1.0, checks["max_abs_action"])
        assert checks["torchscript_max_abs_diff"] <= checks["tolerance"]
        assert checks["onnx_max_abs_diff"] <= checks["tolerance"]
    gaussians = json.loads((bundle_dir / "gaussians.json").read_text())
    assert [e["mu"] for e in gaussians["experts"]] == state.expert_mus().tolist()


def test_tampered_or_missing_bundle_is_rejected(
    trained: tuple[LocalStore, PECState, list[Path]], bundle_dir: Path, tmp_path: Path
) -> None:
    store, state, _ = trained
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    (copy / "policy_1.pt").write_bytes((copy / "policy_1.pt").read_bytes() + b"x")
    with pytest.raises(InputError, match=r"policy_1.pt does not match its checksum"):
        load_bundle(copy)
    with pytest.raises(InputError, match=r"has no manifest.json"):
        load_bundle(tmp_path / "nowhere")
    with pytest.raises(InputError, match="exists and is not empty"):
        export_bundle(store, state, bundle_dir)


def test_bundle_and_cli_route_alike_with_both_routers(
    trained: tuple[LocalStore, PECState, list[Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Hand-made frontier scores say each expert is best near the *other* centre."""
    from pec.presentation.cli import main

    store, state, _ = trained
    evaluated = [[0.79, 0.004], [0.80, 0.0035], [0.85, 0.007], [0.84, 0.0075]]
    candidates = {
        "candidates": [{"id": i, "GCR": g, "spcf": s} for i, (g, s) in enumerate(evaluated)]
    }
    scores = {"iteration": 0, "scores": [[2, 3, 8, 9], [9, 8, 1, 2]]}
    store.write_bytes(layout.candidates_key(RUN, 0), json.dumps(candidates).encode())
    store.write_bytes(layout.scores_key(RUN, 0), json.dumps(scores).encode())
    try:
        out = tmp_path / "bundle"
        export_bundle(store, state, out)
        bundle = load_bundle(out)
        designs = [[0.78, 0.0035], [0.795, 0.004], [0.86, 0.0075], [0.845, 0.007]]
        designs_file = tmp_path / "designs.json"
        designs_file.write_text(
            json.dumps([{"id": i, "GCR": g, "spcf": s} for i, (g, s) in enumerate(designs)])
        )
        picked: dict[str, list[int]] = {}
        for router in ("nearest_centre", "score_informed"):
            argv = ["route", "--run_name", RUN, "--store", str(store.root), "--json"]
            capsys.readouterr()
            assert main([*argv, "--designs_file", str(designs_file), "--router", router]) == 0
            cli = [r["expert"] for r in json.loads(capsys.readouterr().out)["routes"]]
            g, s = np.asarray(designs).T
            assert bundle.route(g, s, router).tolist() == cli
            picked[router] = cli
        assert picked == {"nearest_centre": [0, 0, 1, 1], "score_informed": [1, 1, 0, 0]}
        # router.pt carries the same evidence: its choice equals the bundle's everywhere.
        scripted = torch.jit.load(str(out / ROUTER_TS))  # type: ignore[no-untyped-call]
        space = state_space(state)
        many = np.concatenate(
            [
                np.asarray(designs),
                np.asarray(evaluated),
                space.sample_uniform(2000, np.random.default_rng(4)),
                _edge_designs(space, np.random.default_rng(5)),
            ]
        )
        for flag, router in ((False, "nearest_centre"), (True, "score_informed")):
            expected = bundle.route(many[:, 0], many[:, 1], router).tolist()
            assert scripted(torch.as_tensor(many), flag).tolist() == expected
        assert scripted(torch.as_tensor(np.asarray(designs)), True).tolist() == [1, 1, 0, 0]
        manifest = json.loads((out / "manifest.json").read_text())
        assert "router(designs, True) score-informed" in manifest["router_torchscript_io"]
    finally:
        store.delete(layout.candidates_key(RUN, 0))
        store.delete(layout.scores_key(RUN, 0))


def _scripted_router(
    space: DesignSpace, mus: np.ndarray, ids: list[int], evidence: ScoreEvidence, tmp_path: Path
) -> torch.jit.ScriptModule:
    """router.pt as export_bundle writes it, saved and loaded back."""
    path = tmp_path / f"router_{len(list(tmp_path.iterdir()))}.pt"
    router = TorchRouter(space.lows, space.ranges, mus, np.asarray(ids), evidence)
    torch.jit.script(router).save(str(path))
    loaded: torch.jit.ScriptModule = torch.jit.load(str(path))  # type: ignore[no-untyped-call]
    return loaded


def _edge_designs(space: DesignSpace, rng: np.random.Generator) -> np.ndarray:
    """Corners, points on each side of the box and the box's centre lines."""
    (g0, g1), (s0, s1) = space.gcr, space.spcf
    t = rng.uniform(size=50)
    sides = [
        np.stack([g0 + t * (g1 - g0), np.full(50, s)], axis=1) for s in (s0, s1, (s0 + s1) / 2)
    ] + [np.stack([np.full(50, g), s0 + t * (s1 - s0)], axis=1) for g in (g0, g1, (g0 + g1) / 2)]
    corners = np.asarray([[g0, s0], [g0, s1], [g1, s0], [g1, s1]])
    return np.concatenate([corners, *sides])


def test_torchscript_router_is_the_exact_twin_of_score_routing(tmp_path: Path) -> None:
    """router.pt(designs, True) picks what route_by_scores picks: random, edge, tied designs,
    on the evidence itself, with missing and without any evidence; router.pt(designs) is
    nearest centre."""
    space = DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010))
    rng = np.random.default_rng(12)
    mus = space.sample_uniform(3, rng)
    known = np.concatenate([space.sample_uniform(60, rng), _edge_designs(space, rng)[:4]])
    scores = rng.integers(0, 30, size=(known.shape[0], 3)).astype(np.float64)
    scores[rng.uniform(size=scores.shape) < 0.3] = np.nan  # experts missing on some designs
    scores[:20, 2] = scores[:20, 1]  # experts 1 and 2 tie near these designs
    scores[:20, 0] = np.nan
    few = ScoreEvidence(known[:5], scores[:5])  # fewer designs than neighbours
    tie_all = ScoreEvidence(known, np.full((known.shape[0], 3), 7.0))  # every expert ties
    one_expert = ScoreEvidence(known, np.where(np.arange(3) == 1, scores, np.nan))
    designs = np.concatenate(
        [space.sample_uniform(3000, rng), _edge_designs(space, rng), known, mus]
    )
    cases = {
        "mixed": ScoreEvidence(known, scores),
        "few": few,
        "tie_all": tie_all,
        "one_expert": one_expert,
        "none": ScoreEvidence(np.zeros((0, 2)), np.zeros((0, 3))),
    }
    disagreeing = 0
    for name, evidence in cases.items():
        for ids in ([0, 1, 2], [3, 5, 9]):
            router = _scripted_router(space, mus, ids, evidence, tmp_path)
            expected = np.asarray(ids)[route_by_scores(designs, evidence, mus, space)]
            got = router(torch.as_tensor(designs), True).numpy()
            assert got.tolist() == expected.tolist(), name
            nearest = np.asarray(ids)[route(designs, mus, space)]
            assert router(torch.as_tensor(designs)).numpy().tolist() == nearest.tolist()
            disagreeing += int(np.sum(got != nearest))
    # Not vacuous: the score-informed choice often differs from the nearest centre.
    assert disagreeing > 1000
    # Ties really occur: with every expert tied, the choice is the nearest centre.
    router = _scripted_router(space, mus, [0, 1, 2], tie_all, tmp_path)
    tied = router(torch.as_tensor(designs), True).numpy()
    assert tied.tolist() == route(designs, mus, space).tolist()


# ---------------------------------------------------------------- export tolerance

TINY_SETTINGS: dict[str, object] = {
    "task": {"episode_steps": 40},
    "ppo": {
        "num_steps_per_env": 8,
        "num_mini_batches": 1,
        "num_learning_epochs": 1,
        "actor_hidden_dims": [16, 16],
        "critic_hidden_dims": [16, 16],
    },
}


def _single_expert_run(root: Path, name: str, checkpoint: Path) -> LocalStore:
    """A K=1 run whose expert holds ``checkpoint`` (as after one trained iteration)."""
    store = LocalStore(root)
    run = make_run(store, StoreSpec(location=store.root_uri), name, build_config({"K": 1}))
    state, version, _ = initialise_run(run)
    give_experts_checkpoints(store, name, state, version, [checkpoint])
    return store


@pytest.fixture(scope="module")
def differently_trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """Runs as a user makes them: configs/tiny.yaml's network, a demo-sized one, a warm start."""
    root = tmp_path_factory.mktemp("variety")
    torch.set_num_threads(1)

    def train(
        name: str, settings: dict[str, object], iterations: int, envs: int, **kw: object
    ) -> TrainOutcome:
        return MujocoBackend().train(
            TrainRequest(
                gcr=np.linspace(0.76, 0.88, envs),
                spcf=np.linspace(0.002, 0.009, envs),
                start_level=0,
                max_iterations=iterations,
                seed=5,
                device="cpu",
                work_dir=root / name,
                settings=settings,
                **kw,  # type: ignore[arg-type]
            )
        )

    tiny = train("tiny", TINY_SETTINGS, 2, 4)
    demo = train("demo", {}, 20, 16)
    warm = train("warm", {}, 10, 16, resume_checkpoint=demo.last_checkpoint)
    store_root = root / "store"
    checkpoints = {
        "tiny": tiny.best_checkpoint,
        "demo": demo.best_checkpoint,
        "warm": warm.last_checkpoint,
    }
    for name, checkpoint in checkpoints.items():
        _single_expert_run(store_root, name, checkpoint)
    return store_root, checkpoints


@pytest.mark.parametrize("name", ["tiny", "demo", "warm"])
def test_export_of_differently_trained_runs_passes_through_the_cli(
    differently_trained: tuple[Path, dict[str, Path]], name: str, tmp_path: Path
) -> None:
    from pec.presentation.cli import main

    store_root, _ = differently_trained
    out = tmp_path / "bundle"
    assert main(["export", "--run_name", name, "--store", str(store_root), "--out", str(out)]) == 0
    checks = json.loads((out / "manifest.json").read_text())["experts"][0]["verification"]
    assert checks["onnx_max_abs_diff"] <= checks["tolerance"]
    assert checks["torchscript_max_abs_diff"] <= checks["tolerance"]


@pytest.mark.parametrize("name", ["tiny", "demo", "warm"])
def test_export_tolerance_covers_float32_rounding_with_margin(
    differently_trained: tuple[Path, dict[str, Path]], name: str
) -> None:
    """The same actor in float64 is the exact answer; any float32 implementation (another
    CPU, another runtime) lands about as far from it as eager float32 PyTorch does. The
    tolerance must leave room for two such implementations disagreeing, with margin."""
    import copy

    from tensordict import TensorDict

    from pec.evaluation.bundle_export import _verification_inputs, linear_layers
    from pec.evaluation.checkpoint_actor import actor_actions, load_actor

    _, checkpoints = differently_trained
    actor = load_actor(checkpoints[name])
    obs = _verification_inputs(int(actor.obs_dim))  # type: ignore[arg-type]
    float32 = actor_actions(actor, obs)
    exact = copy.deepcopy(actor).double()
    with torch.inference_mode():
        float64 = exact(
            TensorDict({"policy": torch.as_tensor(obs, dtype=torch.float64)}, batch_size=[len(obs)])
        ).numpy()
    rounding = float(np.max(np.abs(float32 - float64)))
    tolerance = export_tolerance(float32, linear_layers(actor))
    assert rounding > 0.0  # the inputs do exercise float32 rounding
    assert 4 * rounding <= tolerance, (rounding, tolerance)
    # ...and stays far below what a wrong export is off by (a fraction of an action)
    assert tolerance <= 1e-4 * max(1.0, float(np.max(np.abs(float32))))


def test_a_wrong_export_is_refused(
    differently_trained: tuple[Path, dict[str, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An ONNX graph whose last bias is off by 1e-3 of the action scale must not ship."""
    from rsl_rl.models import MLPModel

    from pec.presentation.cli import main

    store_root, _ = differently_trained
    original = MLPModel.as_onnx

    def skewed(self: MLPModel, verbose: bool) -> torch.nn.Module:
        model: torch.nn.Module = original(self, verbose)
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.bias.add_(1e-3 * max(1.0, float(last.bias.abs().max())))
        return model

    monkeypatch.setattr(MLPModel, "as_onnx", skewed)
    out = tmp_path / "bundle"
    capsys.readouterr()
    code = main(["export", "--run_name", "demo", "--store", str(store_root), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "(onnx) differs from the checkpoint's actor" in err and "do not deploy" in err
    assert len(err.splitlines()) == 1
    assert not out.exists()
