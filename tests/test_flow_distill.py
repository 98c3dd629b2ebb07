"""Flow `pec-distill` on a tiny real MuJoCo run: the student, its env steps, its score, artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.trained_experts import TINY_CONFIG, TINY_DESIGNS, finished_tiny_run

from pec.evaluation.distill import distill_record_key, student_eval_key

CONFIG = TINY_CONFIG
DESIGNS = TINY_DESIGNS


@pytest.mark.slow
def test_distill_flow_trains_scores_and_publishes_the_student(
    prefect_harness: None, tmp_path: Path
) -> None:
    from prefect.artifacts import Artifact

    from flows.distill_flow import pec_distill

    location = str(tmp_path / "store")
    store = finished_tiny_run(location, "dist")

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
