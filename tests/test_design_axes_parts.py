"""The pieces of a 3-D run around the maths: config, state, job specs, designs files, the
bundle's TorchScript router and the 3-D plots, each with its refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.patches import Ellipse

from flows.artifacts import MAX_EMBEDDED_PLOT_BYTES
from pec.errors import ConfigError, InputError, StateError
from pec.evaluation.designs_file import parse_designs
from pec.evaluation.torch_router import TorchRouter
from pec.jobs.spec import parse_job_spec
from pec.maths.design_space import DesignSpace
from pec.maths.routing import route
from pec.maths.score_routing import evidence_from, route_by_scores
from pec.presentation.plots import (
    PlotExpert,
    _build_figure_3d,
    ellipsoid_wireframe,
    plot_gaussians,
)
from pec.runs.config import build_config
from pec.runs.state import dump_state, parse_state

SPACE = DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010), leg=(0.20, 0.48))
FLAT = DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010))


# ---------------------------------------------------------------- config and state


def test_leg_range_switches_a_config_to_3d_and_is_checked() -> None:
    config = build_config({"K": 2, "leg_range": [0.2, 0.48]})
    assert config.design_space.axes == ("gcr", "spcf", "leg")
    assert config.effective()["leg_range"] == [0.2, 0.48]
    triples = build_config({"K": 2, "leg_range": [0.2, 0.48], "centers": [[0.8, 0.005, 0.3]] * 2})
    assert triples.centers == [(0.8, 0.005, 0.3)] * 2
    bad: list[tuple[dict[str, Any], str]] = [
        ({"leg_range": [0.48, 0.2]}, "leg_range: must be \\[lo, hi\\] with lo < hi"),
        ({"leg_range": [0.0, 0.4]}, "leg_range: leg lengths are metres > 0"),
        ({"leg_range": [0.2, 0.48], "centers": [[0.8, 0.005]] * 2}, "centers\\[0\\] has 2 values"),
        ({"centers": [[0.8, 0.005, 0.3]] * 2}, "centers\\[0\\] has 3 values"),
        ({"leg_range": [0.2, 0.48], "centers": [[0.8, 0.005, 0.6]] * 2}, "outside the design"),
        ({"leg_range": [0.2, 0.48], "init_anchor_region": "top_right"}, "not defined for a 3-D"),
    ]
    for extra, message in bad:
        with pytest.raises(ConfigError, match=message):
            build_config({"K": 2, **extra})


def _state_3d() -> dict[str, Any]:
    variance = [[1e-4, 0.0, 0.0], [0.0, 1e-6, 0.0], [0.0, 0.0, 1e-3]]
    return {
        "run_name": "s3",
        "iteration": 0,
        "design_space": {"GCR": [0.75, 0.89], "spcf": [0.001, 0.01], "leg": [0.2, 0.48]},
        "experts": [
            {"id": 0, "mu": [0.8, 0.005, 0.3], "sigma": variance, "designs": [[0.8, 0.005, 0.3]]}
        ],
        "init_strategy": "grid",
        "init_seed": 0,
        "init_sigma_scale": 0.1,
        "init_realized_coverage": 0.1,
        "config_hash": "x",
    }


def test_a_3d_state_round_trips_and_mismatched_axes_are_refused() -> None:
    state = parse_state(json.dumps(_state_3d()).encode(), "s3")
    assert state.dim == 3
    np.testing.assert_array_equal(state.expert_variances(), [[1e-4, 1e-6, 1e-3]])
    assert state.designs_array(0).shape == (1, 3)
    assert dump_state(parse_state(dump_state(state), "again")) == dump_state(state)
    cases: list[tuple[str, Any, str]] = [
        ("mu", [0.8, 0.005], "has a 2-D mu and a 3x3 sigma but design_space has 3 axes"),
        ("designs", [[0.8, 0.005]], "designs\\[0\\] has 2 values but design_space has 3 axes"),
        ("sigma", [[1e-4, 0, 0], [0, 1e-6, 1e-9], [0, 0, 1e-3]], "off-diagonal"),
        ("sigma", [[1e-4, 0, 0], [0, 1e-6, 0], [0, 0, -1.0]], "positive variances"),
    ]
    for field, value, message in cases:
        data = _state_3d()
        data["experts"][0][field] = value
        with pytest.raises(StateError, match=message):
            parse_state(json.dumps(data).encode(), "s3")
    data = _state_3d()
    data["design_space"]["width"] = [0.1, 0.2]
    with pytest.raises(StateError, match="'leg' in a 3-D run"):
        parse_state(json.dumps(data).encode(), "s3")


# ---------------------------------------------------------------- job specs, designs files


def _eval_spec(**extra: Any) -> dict[str, Any]:
    return {
        "kind": "eval",
        "backend": "mujoco",
        "store": {"location": "/tmp/x"},
        "run_name": "r",
        "expert_id": 0,
        "iteration": 0,
        "checkpoint_uri": "/tmp/x/c.pt",
        "designs": [[0.8, 0.005]],
        "num_episodes": 1,
        "start_difficulty": 0,
        "seed": 0,
        "timeout_s": 10.0,
        **extra,
    }


def test_job_specs_name_their_axes_only_in_3d() -> None:
    flat = parse_job_spec(_eval_spec())
    assert "axes" not in json.loads(flat.model_dump_json())  # a 2-D spec is what it was
    spec = parse_job_spec(_eval_spec(designs=[[0.8, 0.005, 0.3]], axes=["gcr", "spcf", "leg"]))
    assert json.loads(spec.model_dump_json())["axes"] == ["gcr", "spcf", "leg"]
    with pytest.raises(ConfigError, match="designs\\[0\\] has 3 values but the job's axes"):
        parse_job_spec(_eval_spec(designs=[[0.8, 0.005, 0.3]]))
    with pytest.raises(ConfigError, match="axes \\['gcr', 'leg'\\] are not a design space"):
        parse_job_spec(_eval_spec(axes=["gcr", "leg"]))
    train = {
        k: v
        for k, v in _eval_spec().items()
        if k not in ("checkpoint_uri", "designs", "num_episodes", "start_difficulty")
    }
    train.update(
        kind="train",
        samples_gcr_key="a",
        samples_spcf_key="b",
        start_level=0,
        max_iterations=1,
        num_envs=1,
        axes=["gcr", "spcf", "leg"],
    )
    with pytest.raises(ConfigError, match="samples_leg_key must be set exactly when axes"):
        parse_job_spec(train)
    assert parse_job_spec({**train, "samples_leg_key": "c"}).samples_leg_key == "c"  # type: ignore[union-attr]


def test_designs_files_must_match_the_runs_axes() -> None:
    three = [{"id": 0, "GCR": 0.8, "spcf": 0.005, "leg": 0.3}]
    two = [{"id": 0, "GCR": 0.8, "spcf": 0.005}]
    assert parse_designs(three, "f", SPACE)[0].values() == [0.8, 0.005, 0.3]
    assert "leg" not in parse_designs(two, "f", FLAT)[0].model_dump()
    with pytest.raises(InputError, match="has no leg length but the run's design space is 3-D"):
        parse_designs(two, "f", SPACE)
    with pytest.raises(InputError, match="has a leg length but the run's design space is 2-D"):
        parse_designs(three, "f", FLAT)
    with pytest.raises(InputError, match=r"entry 1 .* lacks 'leg' unlike entry 0"):
        parse_designs([*three, {"id": 1, "GCR": 0.8, "spcf": 0.005}], "f")
    with pytest.raises(InputError, match=r"lies outside the design space GCR .* leg \[0.2, 0.48\]"):
        parse_designs([{"id": 0, "GCR": 0.8, "spcf": 0.005, "leg": 0.5}], "f", SPACE)


# ---------------------------------------------------------------- bundle router


def test_the_torchscript_router_routes_3d_designs_like_the_maths() -> None:
    rng = np.random.default_rng(5)
    centres = SPACE.sample_uniform(4, rng)
    known = SPACE.sample_uniform(25, rng)
    scores = rng.integers(0, 15, size=(4, 25)).astype(float)
    scores[1, :8] = np.nan
    evidence = evidence_from([(known, list(scores))], 4, dim=3)
    ids = np.array([0, 1, 2, 3])
    router = torch.jit.script(TorchRouter(SPACE.lows, SPACE.ranges, centres, ids, evidence))
    queries = np.concatenate([SPACE.sample_uniform(200, rng), known[:5], centres])
    tensor = torch.as_tensor(queries)
    assert router(tensor).tolist() == route(queries, centres, SPACE).tolist()
    informed = route_by_scores(queries, evidence, centres, SPACE)
    assert router(tensor, True).tolist() == informed.tolist()


# ---------------------------------------------------------------- 3-D plots


def _experts(K: int) -> list[PlotExpert]:
    rng = np.random.default_rng(3)
    return [
        PlotExpert(
            id=k,
            mu=SPACE.sample_uniform(1, rng)[0],
            variance=(0.1 * SPACE.ranges) ** 2,
            designs=SPACE.sample_uniform(6, rng),
        )
        for k in range(K)
    ]


def test_wireframe_points_lie_on_the_two_sigma_ellipsoid() -> None:
    mu = np.array([0.8, 0.005, 0.3])
    variance = np.array([1e-4, 4e-6, 2.5e-3])
    spcf, leg, gcr = ellipsoid_wireframe(mu, variance)
    for g, s, m in zip(gcr.ravel(), spcf.ravel(), leg.ravel(), strict=True):
        mahalanobis2 = (g - mu[0]) ** 2 / variance[0]
        mahalanobis2 += (s - mu[1]) ** 2 / variance[1] + (m - mu[2]) ** 2 / variance[2]
        assert math.isclose(mahalanobis2, 4.0, rel_tol=1e-9)


def test_the_3d_figure_has_three_projections_and_a_wireframe_view(tmp_path: Path) -> None:
    experts = _experts(3)
    candidates = SPACE.sample_uniform(5, np.random.default_rng(9))
    scores = np.array([[1, 0, 4, 0, 2], [3, 0, 1, 0, 2], [0, 0, 1, 0, np.nan]], dtype=float)
    figure = _build_figure_3d(SPACE, experts, title="t", candidates=candidates, scores=scores)
    flat_axes = [ax for ax in figure.axes if ax.name != "3d"]
    solid = [ax for ax in figure.axes if ax.name == "3d"]
    assert len(flat_axes) == 3 and len(solid) == 1
    labels = [(ax.get_xlabel(), ax.get_ylabel()) for ax in flat_axes]
    assert labels == [("spcf", "GCR"), ("leg (m)", "GCR"), ("spcf", "leg (m)")]
    for ax in flat_axes:
        ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
        assert len(ellipses) == 2 * len(experts)  # 1-sigma and 2-sigma per expert
        stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
        assert len(stars) == 5
        # candidate 1 and 3: every expert scored 0 -> grey; candidate 0 -> expert 1's colour
        assert stars[1].get_color() == stars[3].get_color() == "#7f7f7f"
        assert stars[0].get_color() == "#ff7f0e"
    # the spcf-GCR panel's ellipse of expert 0 has the projected 2-sigma half-widths
    outer = [p for p in flat_axes[0].patches if isinstance(p, Ellipse)][1]
    sigma = np.sqrt(experts[0].variance)
    assert outer.width == pytest.approx(4 * sigma[1]) and outer.height == pytest.approx(
        4 * sigma[0]
    )
    wireframes = [c for c in solid[0].collections if isinstance(c, LineCollection)]
    assert len(wireframes) == len(experts)
    png = plot_gaussians(
        SPACE.gcr,
        SPACE.spcf,
        experts,
        title="t",
        candidates=candidates,
        scores=scores,
        leg_range=SPACE.leg,
    )
    assert png.startswith(b"\x89PNG") and len(png) < MAX_EMBEDDED_PLOT_BYTES
    with pytest.raises(InputError, match="a 3-D plot needs \\[GCR, spcf, leg\\]"):
        _build_figure_3d(
            SPACE, [PlotExpert(id=0, mu=[0.8, 0.005], variance=[1e-4, 1e-6], designs=[])], title="t"
        )


def test_pec_init_with_leg_range_seeds_3d_gaussians(tmp_path: Path) -> None:
    from pec.presentation.cli import main
    from pec.runs.state_io import load_state
    from pec.runs.store import LocalStore

    root = tmp_path / "store"
    argv = ["init", "--run_name", "i3", "--store", str(root), "--K", "3"]
    assert main([*argv, "--leg_range", "0.2,0.48", "--set", "init_pool_size=300"]) == 0
    loaded = load_state(LocalStore(root), "i3")
    assert loaded is not None
    state = loaded[0]
    assert state.design_space["leg"] == [0.2, 0.48] and state.init_strategy == "stochastic_fps"
    std = np.sqrt(state.expert_variances())
    ranges = np.array([0.14, 0.009, 0.28])
    np.testing.assert_allclose(std, np.tile(state.init_sigma_scale * ranges / 3 ** (1 / 3), (3, 1)))
    assert (root / "i3" / "plots" / "initial_state.png").read_bytes().startswith(b"\x89PNG")
