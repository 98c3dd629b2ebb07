"""Flow `pec-distill` on a tiny real MuJoCo run: the student, its env steps, its score, artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pec.evaluation.distill import distill_record_key, student_eval_key
from pec.iteration.driver import run_until_done
from pec.jobs.executors import InProcessExecutor
from pec.jobs.runner import LocalJobRunner
from pec.presentation.visualize import render_all_soft
from pec.runs.config import load_config
from pec.runs.run import make_run, open_run_store

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
DESIGNS = [
    {"id": 0, "GCR": 0.78, "spcf": 0.002},
    {"id": 1, "GCR": 0.82, "spcf": 0.005},
    {"id": 2, "GCR": 0.88, "spcf": 0.009},
]


@pytest.mark.slow
def test_distill_flow_trains_scores_and_publishes_the_student(
    prefect_harness: None, tmp_path: Path
) -> None:
    from prefect.artifacts import Artifact

    from flows.distill_flow import pec_distill

    location = str(tmp_path / "store")
    store, spec = open_run_store(location)
    config = load_config(CONFIG, {"max_pec_iterations": 1})
    run_until_done(
        make_run(store, spec, "dist", config),
        LocalJobRunner(InProcessExecutor()),
        plot=render_all_soft,
    )

    common = {
        "run_name": "dist",
        "iterations": 2,
        "finetune_iterations": 1,
        "store": location,
        "config": str(CONFIG),
        "overrides": {"max_pec_iterations": 1},
        "designs": DESIGNS,
        "designs_stem": "heldout3",
    }
    result = pec_distill(**common)
    record = json.loads(store.read_bytes(distill_record_key("dist")))
    assert result["checkpoint"] == record["checkpoint"]
    assert store.exists(store.key_for_uri(record["checkpoint"]))
    # tiny.yaml: 4 envs x 8 steps per rollout; 2 imitation rounds + 1 PPO iteration
    assert result["env_steps"] == record["env_steps"] == (2 + 1) * 4 * 8
    scored = json.loads(store.read_bytes(student_eval_key("dist", "heldout3")))
    assert len(scored["levels"]) == len(DESIGNS)
    assert result["student_mean"] == pytest.approx(sum(scored["levels"]) / len(DESIGNS))
    assert Artifact.get("pec-dist-distill") is not None
    # a second flow run reuses both stages and the score (the driver's store lookup)
    again = pec_distill(**common)
    assert again == result
    assert json.loads(store.read_bytes(distill_record_key("dist")))["stages"] == record["stages"]
