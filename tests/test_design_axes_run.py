"""A 3-D run (GCR x spcf x leg, configs/obstacle_3d.yaml) end to end: `pec run`, the step
commands and the `pec` flow on the zero-cost backend, and a backend without a leg axis
refusing the run before anything is written.

The zero-cost backend stands in for the simulator through the job layer's registry lookup
(it varies every axis because it simulates nothing); the physics of leg length is the MuJoCo
and Isaac Lab backends' business and is tested there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from prefect.artifacts import Artifact
from support.job_doubles import RecordingBackend

import pec.jobs.run as jobs_run
from flows.artifacts import artifact_key
from flows.pec_flow import pec_flow
from pec.backends.base import Backend
from pec.backends.registry import BACKEND_DESIGN_AXES
from pec.errors import InputError
from pec.presentation.cli import main
from pec.runs import checkpoints, layout
from pec.runs.state_io import load_state
from pec.runs.store import LocalStore

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "obstacle_3d.yaml")
SMALL = [
    "K=2",
    "N_init=5",
    "init_pool_size=300",
    "num_envs=6",
    "F=4",
    "pool_factor=5",
    "max_iterations_iter0=2",
    "max_iterations=2",
    "score=final_level",
    "num_episodes=1",
    "start_difficulty=3",
    # one iteration: a second would warm-start from the zero-cost backend's checkpoints, which
    # the preflight rightly refuses as not torch archives
    "max_pec_iterations=1",
]
LEG = (0.20, 0.48)


@pytest.fixture
def zero_cost(monkeypatch: pytest.MonkeyPatch) -> RecordingBackend:
    """Every job of this test runs on one recording zero-cost backend (all axes)."""
    backend = RecordingBackend()
    monkeypatch.setattr(jobs_run, "get_backend", lambda name: cast(Backend, backend))
    # Its checkpoints are opaque bytes, not torch archives, so the weights-only preflight of
    # the commands that load expert checkpoints (tested on real MuJoCo checkpoints in
    # test_checkpoint_preflight.py and by the MuJoCo 3-D test below) is passed over here.
    monkeypatch.setattr(checkpoints, "check_checkpoint", lambda *args, **kwargs: None)
    return backend


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def check_3d_run(root: Path, run: str, backend: RecordingBackend, iterations: int) -> None:
    store = LocalStore(root)
    loaded = load_state(store, run)
    assert loaded is not None
    state = loaded[0]
    assert state.iteration == iterations
    assert state.design_space == {"GCR": [0.75, 0.89], "spcf": [0.001, 0.01], "leg": list(LEG)}
    for expert in state.experts:
        assert len(expert.mu) == 3 and len(expert.sigma) == 3
        assert all(len(d) == 3 for d in expert.designs)
        assert LEG[0] <= expert.mu[2] <= LEG[1]
    # every training got its own leg lengths, the ones written to leg.npy, inside the range
    assert len(backend.train_requests) == 2 * iterations
    for request in backend.train_requests:
        assert request.leg is not None and request.leg.shape == (6,)
        assert np.all((request.leg >= LEG[0]) & (request.leg <= LEG[1]))
    leg = np.load(root / layout.leg_samples_key(run, 1, 0))
    assert leg.dtype == np.float32 and leg.shape == (6,)
    assert any(np.array_equal(r.leg, leg) for r in backend.train_requests)
    # frontier candidates and the evaluations carry the leg axis too
    candidates = json.loads((root / layout.candidates_key(run, 0)).read_text())["candidates"]
    assert [sorted(c) for c in candidates] == [["GCR", "id", "leg", "max_log_density", "spcf"]] * 4
    request = backend.eval_requests[0]
    assert request.leg is not None
    np.testing.assert_array_equal(request.leg, [c["leg"] for c in candidates])
    assignments = json.loads((root / layout.assignments_key(run, 0)).read_text())
    assert all("leg" in c for c in assignments["candidates"])
    for key in (layout.initial_plot_key(run), layout.frontier_plot_key(run, 0)):
        assert (root / key).read_bytes().startswith(b"\x89PNG")


def test_pec_run_and_the_step_commands_on_a_3d_config(
    tmp_path: Path, zero_cost: RecordingBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "store"
    argv = ["--run_name", "three", "--store", str(root), "--config", CONFIG, *sets(SMALL)]
    assert main(["run", *argv]) == 0
    check_3d_run(root, "three", zero_cost, iterations=1)
    capsys.readouterr()

    # final evaluation on a 3-D designs file drawn from the run's own box
    designs = tmp_path / "uniform8.json"
    store_args = ["--run_name", "three", "--store", str(root)]
    assert main(["designs", "uniform", "--n", "8", "--out", str(designs), *store_args]) == 0
    rows = json.loads(designs.read_text())
    assert all(sorted(r) == ["GCR", "id", "leg", "spcf"] for r in rows)
    assert main(["eval-final", *argv, "--designs_file", str(designs)]) == 0
    summary = json.loads((root / layout.final_eval_summary_key("three", "uniform8")).read_text())
    assert summary["design_space"]["leg"] == list(LEG)
    assert [d["leg"] for d in summary["designs"]] == [r["leg"] for r in rows]
    assert len(summary["routed_expert"]) == 8 and len(summary["score_routed_expert"]) == 8
    assert summary["rules"]["routed"].startswith("nearest centre (all 3 axes normalised")

    # the generalist trains on uniform designs of the whole 3-D box and is scored on the same
    before = len(zero_cost.train_requests)
    assert main(["baseline", "train", *store_args, "--max_iterations", "2"]) == 0
    (generalist,) = zero_cost.train_requests[before:]
    assert generalist.leg is not None and generalist.leg.shape == (6,)
    assert np.all((generalist.leg >= LEG[0]) & (generalist.leg <= LEG[1]))
    assert len(np.unique(generalist.leg)) == 6
    assert main(["baseline", "eval", *store_args, "--designs_file", str(designs)]) == 0
    assert zero_cost.eval_requests[-1].leg is not None
    np.testing.assert_array_equal(zero_cost.eval_requests[-1].leg, [r["leg"] for r in rows])

    # routing a single 3-D design by its three coordinates; a 2-D question is refused
    capsys.readouterr()
    flags = ["--GCR", "0.8", "--spcf", "0.005"]
    assert main(["route", *store_args, *flags, "--leg", "0.3", "--json"]) == 0
    route = json.loads(capsys.readouterr().out)["routes"][0]
    assert route["leg"] == 0.3 and route["expert"] in (0, 1)
    assert main(["route", *store_args, *flags]) == 2
    assert "--leg: run 'three' is 3-D" in capsys.readouterr().err

    # the run's shape is fixed: dropping leg_range from its config is refused in one line
    assert main(["status", *store_args]) == 0
    assert "leg" in capsys.readouterr().out  # the mu and std columns of the leg axis
    two_d = ["--config", str(REPO / "configs" / "tiny.yaml"), *sets(SMALL)]
    code = main(["run", *store_args, *two_d])
    err = capsys.readouterr().err
    assert code == 2 and "leg_range" in err and "is 3-D" in err and "Traceback" not in err


@pytest.mark.usefixtures("prefect_harness")
def test_the_pec_flow_runs_a_3d_config(tmp_path: Path, zero_cost: RecordingBackend) -> None:
    root = tmp_path / "store"
    import yaml

    typed = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in SMALL)}
    summary = pec_flow(
        run_name="flow3d", store=str(root), config=CONFIG, overrides=typed, chain=False
    )
    assert summary["iteration"] == 0 and summary["stop_reason"] == "reached max_pec_iterations=1"
    check_3d_run(root, "flow3d", zero_cost, iterations=1)
    artifact = Artifact.get(artifact_key("flow3d", "summary"))
    assert artifact is not None and isinstance(artifact.data, str)
    assert "iter_0_frontier" in artifact.data and "data:image/png;base64," in artifact.data
    table = Artifact.get(artifact_key("flow3d", "experts"))
    assert table is not None
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert len(rows) == 2
    assert all("mu (GCR, spcf, leg)" in r and "std (GCR, spcf, leg)" in r for r in rows)
    assert all(r["mu (GCR, spcf, leg)"].count(",") == 2 for r in rows)


def test_a_backend_without_the_leg_axis_refuses_a_3d_run_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both simulators vary leg length now; a backend that does not (as Isaac Lab did) is
    # stood for by its registry entry, which is what the check reads.
    monkeypatch.setitem(BACKEND_DESIGN_AXES, "isaaclab", ("gcr", "spcf"))
    root = tmp_path / "store"
    argv = ["run", "--run_name", "r3", "--store", str(root), "--config", CONFIG]
    assert main([*argv, *sets(SMALL), "--set", "backend=isaaclab"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "does not simulate the design axis 'leg'" in err and "'isaaclab'" in err
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))


def test_a_job_refuses_an_axis_its_backend_does_not_vary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pec.jobs.run import run_eval_job
    from pec.jobs.spec import parse_job_spec

    class FlatBackend(RecordingBackend):
        design_axes = ("gcr", "spcf")

    backend = FlatBackend()
    monkeypatch.setattr(jobs_run, "get_backend", lambda name: cast(Backend, backend))
    spec = parse_job_spec(
        {
            "kind": "eval",
            "backend": "test-flat",
            "store": {"location": str(tmp_path)},
            "run_name": "r",
            "expert_id": 0,
            "iteration": 0,
            "checkpoint_uri": str(tmp_path / "missing.pt"),
            "designs": [[0.8, 0.005, 0.3]],
            "axes": ["gcr", "spcf", "leg"],
            "num_episodes": 1,
            "start_difficulty": 0,
            "seed": 0,
            "timeout_s": 10.0,
        }
    )
    with pytest.raises(InputError, match="design axis 'leg' is not supported by this backend"):
        run_eval_job(spec)  # before the (missing) checkpoint is fetched
    assert backend.eval_requests == []


# ---------------------------------------------------------------- real physics: MuJoCo

RAMP = str(REPO / "configs" / "ramp_3d.yaml")
TINY_RAMP = [
    "K=2",
    "N_init=5",
    "init_pool_size=300",
    "num_envs=4",
    "F=4",
    "pool_factor=5",
    "max_iterations_iter0=2",
    "max_iterations=2",
    "score=final_level",
    "num_episodes=1",
    "start_difficulty=0",
    "max_pec_iterations=2",
    (
        "backend_settings={task: {episode_steps: 40, leg_norm_range: [0.20, 0.48], "
        "gcr_norm_range: [0.725, 0.89], spcf_norm_range: [0.005, 0.100]}, ppo: "
        "{num_steps_per_env: 8, num_mini_batches: 1, num_learning_epochs: 1, "
        "actor_hidden_dims: [16, 16], critic_hidden_dims: [16, 16]}}"
    ),
]


def test_pec_run_3d_ramp_on_mujoco_then_final_eval_and_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pec.evaluation.bundle import load_bundle

    root = tmp_path / "store"
    store_args = ["--run_name", "ramp3", "--store", str(root)]
    assert main(["run", *store_args, "--config", RAMP, *sets(TINY_RAMP)]) == 0
    loaded = load_state(LocalStore(root), "ramp3")
    assert loaded is not None and loaded[0].iteration == 2
    state = loaded[0]
    assert state.design_space["leg"] == [0.2, 0.48] and state.design_space["spcf"] == [0.005, 0.1]
    assert all(e.trained and len(e.mu) == 3 for e in state.experts)
    config = (root / "ramp3" / "pec_config.yaml").read_text()
    assert "task: ramp" in config and "leg_range" in config
    for key in (layout.frontier_plot_key("ramp3", 1), layout.coverage_plot_key("ramp3")):
        assert (root / key).read_bytes().startswith(b"\x89PNG")

    designs = tmp_path / "uniform6.json"
    assert main(["designs", "uniform", "--n", "6", "--out", str(designs), *store_args]) == 0
    assert main(["eval-final", *store_args, "--designs_file", str(designs)]) == 0
    summary = json.loads((root / layout.final_eval_summary_key("ramp3", "uniform6")).read_text())
    assert len(summary["oracle"]) == 6 and all("leg" in d for d in summary["designs"])
    assert main(["report", *store_args, "--designs_file", str(designs)]) == 0
    report = next(root.rglob("report.md")).read_text()
    assert "ramp3" in report and "at leg 0.340 m" not in report  # regions are in the PNG only

    bundle_dir = tmp_path / "bundle"
    assert main(["export", *store_args, "--out", str(bundle_dir)]) == 0
    bundle = load_bundle(bundle_dir)
    assert bundle.space.axes == ("gcr", "spcf", "leg")
    legs = np.array([0.21, 0.3, 0.47])
    routed = bundle.route([0.8, 0.8, 0.8], [0.05, 0.05, 0.05], leg=legs)
    centres = np.asarray([e.mu for e in state.experts])
    from pec.maths.routing import route as maths_route

    points = np.column_stack([[0.8] * 3, [0.05] * 3, legs])
    assert routed.tolist() == maths_route(points, centres, bundle.space).tolist()
    actions = bundle.act(0.8, 0.05, np.zeros(bundle.obs_dim), leg=0.3)
    assert actions.shape == (bundle.action_dim,) and bool(np.all(np.isfinite(actions)))
    with pytest.raises(InputError, match="pass leg="):
        bundle.route(0.8, 0.05)


@pytest.mark.usefixtures("prefect_harness")
def test_the_pec_flow_runs_the_3d_ramp_config_on_mujoco(tmp_path: Path) -> None:
    import yaml

    root = tmp_path / "store"
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in TINY_RAMP)}
    overrides["max_pec_iterations"] = 1
    summary = pec_flow(
        run_name="flowramp", store=str(root), config=RAMP, overrides=overrides, chain=False
    )
    assert summary["stop_reason"] == "reached max_pec_iterations=1"
    loaded = load_state(LocalStore(root), "flowramp")
    assert loaded is not None and loaded[0].iteration == 1 and loaded[0].dim == 3
    artifact = Artifact.get(artifact_key("flowramp", "summary"))
    assert artifact is not None and isinstance(artifact.data, str)
    assert "iter_0_frontier" in artifact.data and "data:image/png;base64," in artifact.data
