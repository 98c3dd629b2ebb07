"""The demo's experts compete (issue 12): a reduced `configs/embedded.yaml` run, end to end.

Same config as the main job with fewer PPO iterations, F=8 and 48 envs (about 90 s on two
idle cores). Across both iterations at most 20% of the frontier candidates may be tied
between all experts, and no winning score may equal the protocol's ceiling unless it is 74.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pec.maths.protocols import frontier_competition
from pec.presentation.cli import main
from pec.runs import layout
from pec.runs.store import LocalStore

REPO = Path(__file__).resolve().parents[1]
REDUCED = ["max_iterations_iter0=150", "max_iterations=60", "F=8", "num_envs=48"]


@pytest.mark.slow
def test_reduced_demo_experts_really_compete(tmp_path: Path) -> None:
    overrides = [item for kv in REDUCED for item in ("--set", kv)]
    argv = ["run", "--run_name", "demo", "--store", str(tmp_path)]
    assert main([*argv, "--config", str(REPO / "configs" / "embedded.yaml"), *overrides]) == 0
    store = LocalStore(tmp_path)
    tied = candidates = 0
    for iteration in (0, 1):
        scores = json.loads(store.read_bytes(layout.scores_key("demo", iteration)))
        protocol = scores["protocol"]
        assert protocol["score"] == "level_search" and protocol["ceiling"] == 74
        stats = frontier_competition(scores["scores"], protocol["ceiling"])
        tied += stats["all_tied"]
        candidates += stats["candidates"]
        if protocol["ceiling"] != 74:
            assert stats["winner_at_ceiling"] == 0
    assert candidates == 16
    assert tied <= 0.2 * candidates, f"{tied} of {candidates} candidates tied between all experts"
