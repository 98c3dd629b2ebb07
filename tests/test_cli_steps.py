"""`pec init` → `pec frontier` → `pec refit --scores` → `pec visualize` on a local folder and on S3.

The expected Gaussians are recomputed here from the reference sheet's formulas, independently
of pec.maths.refit: argmax with ties to the lower id, MLE mean, ddof-1 variance floored at
(min_var_scale × range)².
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pec.maths.coverage import coverage
from pec.maths.design_space import DesignSpace
from pec.maths.seeds import derive_seed
from pec.presentation.cli import main
from pec.runs.state import PECState
from pec.runs.store import Store

RUN = "demo"


@pytest.fixture(params=["local", "s3"])
def store_location(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Store]:
    if request.param == "local":
        from pec.runs.store import LocalStore

        root = tmp_path / "store"
        root.mkdir()
        return str(root), LocalStore(root)
    server = request.getfixturevalue("s3_server")
    bucket = server.make_bucket()
    monkeypatch.setenv("PEC_S3_ENDPOINT_URL", server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from pec.runs.store import S3Store

    return f"s3://{bucket}/pec", S3Store(bucket, "pec", server.settings())


def _json(store: Store, key: str) -> Any:
    return json.loads(store.read_bytes(key))


def test_init_refit_visualize_follow_the_formulas(
    store_location: tuple[str, Store], tmp_path: Path
) -> None:
    location, store = store_location
    common = ["--run_name", RUN, "--store", location]
    assert (
        main(
            [
                "init",
                *common,
                "--K",
                "3",
                "--set",
                "F=8",
                "--set",
                "pool_factor=4",
                "--set",
                "N_init=5",
            ]
        )
        == 0
    )
    state0 = _json(store, f"{RUN}/pec_state.json")
    assert state0["iteration"] == 0 and len(state0["experts"]) == 3
    assert store.exists(f"{RUN}/pec_config.yaml")

    assert main(["frontier", *common]) == 0
    candidates = _json(store, f"{RUN}/frontier_evals/iter_0/candidates.json")["candidates"]
    assert len(candidates) == 8
    # Expert 0 wins 0-2, expert 1 wins 3-5 (and the tie on 4), expert 2 wins 6; 7 is all-zero -> 0.
    scores = [
        [9, 8, 7, 0, 3, 0, 0, 0],
        [1, 1, 1, 5, 3, 6, 0, 0],
        [0, 0, 0, 0, 0, 0, 4, 0],
    ]
    scores_file = tmp_path / "scores.json"
    scores_file.write_text(json.dumps({"scores": scores}))
    # another seed in the config must not move the run's Monte-Carlo coverage point set
    assert main(["refit", *common, "--scores", str(scores_file), "--set", "seed=7"]) == 0

    state1 = _json(store, f"{RUN}/pec_state.json")
    assert state0["coverage_seed"] == state1["coverage_seed"] == derive_seed(0, "coverage")
    refitted = PECState.model_validate(state1)
    space = DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010))
    assert state1["coverage"][0]["coverage"] == coverage(
        refitted.expert_mus(), refitted.expert_variances(), space, seed=state1["coverage_seed"]
    )
    assert [s["dl"] for s in state1["history"][0]["experts_snapshot"]] == [None] * 3
    assert state1["iteration"] == 1
    assert state1["history"][0]["iteration"] == 0
    winners = [0, 0, 0, 1, 0, 1, 2, 0]
    assignments = _json(store, f"{RUN}/frontier_evals/iter_0/assignments.json")
    assert [c["winner"] for c in assignments["candidates"]] == winners
    ranges = np.array([0.89 - 0.75, 0.010 - 0.001])
    floor = (0.01 * ranges) ** 2
    for k in range(3):
        old = state0["experts"][k]
        snap = state1["history"][0]["experts_snapshot"][k]
        assert snap["mu"] == old["mu"] and snap["n_designs"] == 5
        won = [[c["GCR"], c["spcf"]] for c, w in zip(candidates, winners, strict=True) if w == k]
        designs = np.array(old["designs"] + won)
        new = state1["experts"][k]
        assert new["designs"] == designs.tolist()
        expected_mu = designs.mean(axis=0)
        ddof = 1 if len(designs) > 1 else 0
        expected_var = np.maximum(designs.var(axis=0, ddof=ddof), floor)
        np.testing.assert_allclose(new["mu"], expected_mu, rtol=1e-12)
        np.testing.assert_allclose(
            [new["sigma"][0][0], new["sigma"][1][1]], expected_var, rtol=1e-12
        )
        assert new["sigma"][0][1] == 0.0 and new["sigma"][1][0] == 0.0

    assert main(["visualize", *common]) == 0
    for name in ("initial_state.png", "iter_0_frontier.png", "after_iter_0_current.png"):
        data = store.read_bytes(f"{RUN}/plots/{name}")
        assert data.startswith(b"\x89PNG")

    assert main(["status", *common]) == 0


def test_refit_twice_is_refused_by_the_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--run_name", RUN, "--store", str(tmp_path / "s")]
    assert main(["init", *common, "--K", "2", "--set", "F=3", "--set", "pool_factor=2"]) == 0
    assert main(["frontier", *common]) == 0
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps([[1, 2, 3], [3, 2, 1]]))
    assert main(["refit", *common, "--scores", str(scores)]) == 0
    capsys.readouterr()
    # Iteration 1 has no candidates yet: a second refit must fail cleanly.
    assert main(["refit", *common]) == 2
    err = capsys.readouterr().err.strip()
    assert "iteration 1" in err and len(err.splitlines()) == 1
