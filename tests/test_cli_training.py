"""The step CLI on the real MuJoCo backend: init → train-expert ×K → evaluate-frontier → refit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pec.presentation.cli import main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


@pytest.mark.parametrize("executor", ["inprocess", "subprocess"])
def test_step_commands_train_evaluate_and_refit(tmp_path: Path, executor: str) -> None:
    store = tmp_path / "store"
    common = ["--run_name", "steps", "--store", str(store)]
    assert main(["init", *common, "--config", str(CONFIG), "--set", f"executor={executor}"]) == 0
    for k in (0, 1):
        assert main(["train-expert", *common, "--expert_id", str(k), "--dl", str(3 * k)]) == 0
        record = store / f"steps/checkpoints/expert_{k}/iter_0/result.json"
        assert json.loads(record.read_text())["dl"] == 3 * k  # the dl it really trained at
    state = json.loads((store / "steps" / "pec_state.json").read_text())
    for expert in state["experts"]:
        assert expert["last_trained_pec_iter"] == 0 and expert["trained"]
        assert Path(expert["checkpoint"]).is_file()
        assert expert["checkpoint"].endswith(f"expert_{expert['id']}/iter_0/model_best.pt")

    assert main(["evaluate-frontier", *common]) == 0
    scores = json.loads((store / "steps/frontier_evals/iter_0/scores.json").read_text())
    assert len(scores["scores"]) == 2
    assert all(len(row) == 4 and all(0 <= v <= 74 for v in row) for row in scores["scores"])
    assert scores["protocol"]["num_episodes"] == 1

    assert main(["refit", *common]) == 0
    state = json.loads((store / "steps" / "pec_state.json").read_text())
    assert state["iteration"] == 1 and len(state["history"]) == 1
    assert [s["dl"] for s in state["history"][0]["experts_snapshot"]] == [0, 3]

    # iteration 1 warm-starts from iteration 0's checkpoint
    assert main(["train-expert", *common, "--expert_id", "0"]) == 0
    result = json.loads((store / "steps/checkpoints/expert_0/iter_1/result.json").read_text())
    assert result["metrics"]["iterations"] > 2  # the counter continued from the checkpoint
    # dl auto-scaling: max(0, floor(mean(iteration 0's frontier scores)) - dl_buffer)
    assert result["dl"] == max(0, int(np.floor(np.mean(scores["scores"][0]))) - 2)
