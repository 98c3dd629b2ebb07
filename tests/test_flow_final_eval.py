"""Flow `pec-final-eval` on a tiny real MuJoCo run: per-expert results, summary, report, artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.trained_experts import TINY_CONFIG, TINY_DESIGNS, finished_tiny_run

from pec.errors import InputError
from pec.runs import layout

CONFIG = TINY_CONFIG
DESIGNS = TINY_DESIGNS


@pytest.mark.slow
def test_final_eval_flow_writes_summary_report_and_artifacts(
    prefect_harness: None, tmp_path: Path
) -> None:
    from prefect.artifacts import Artifact

    from flows.final_eval_flow import pec_final_eval

    location = str(tmp_path / "store")
    store = finished_tiny_run(location, "final")

    result = pec_final_eval(
        run_name="final",
        designs=DESIGNS,
        designs_stem="heldout3",
        store=location,
        config=str(CONFIG),
        overrides={"max_pec_iterations": 1},
        with_baseline=False,
    )

    summary = json.loads(store.read_bytes(layout.final_eval_summary_key("final", "heldout3")))
    matrix = summary["scores"]  # one row per expert, one column per design
    assert len(matrix) == 2 and all(len(row) == len(DESIGNS) for row in matrix)
    oracle = summary["oracle"]
    assert [max(column) for column in zip(*matrix, strict=True)] == list(oracle)
    assert result["oracle_mean"] == pytest.approx(sum(oracle) / len(oracle))
    assert result["routed_mean"] <= result["oracle_mean"]
    for k in (0, 1):
        assert store.exists(layout.final_eval_expert_key("final", "heldout3", k))
    assert result["report_uri"].endswith("report.md")
    assert Artifact.get("pec-final-final-heldout3") is not None

    # The same run under the other protocol (flow parameter `score`): evaluated again, not
    # reused, and recorded; a final_level setting with level_search is refused, nothing written.
    first = json.loads(store.read_bytes(layout.final_eval_expert_key("final", "heldout3", 0)))
    assert first["protocol"]["score"] == "final_level"  # tiny.yaml's protocol
    common = {
        "run_name": "final",
        "designs": DESIGNS,
        "designs_stem": "heldout3",
        "store": location,
        "with_baseline": False,
    }
    pec_final_eval(**common, score="level_search")
    summary = json.loads(store.read_bytes(layout.final_eval_summary_key("final", "heldout3")))
    assert (summary["protocol"]["score"], summary["protocol"]["ceiling"]) == ("level_search", 74)
    again = json.loads(store.read_bytes(layout.final_eval_expert_key("final", "heldout3", 0)))
    assert again["protocol"]["score"] == "level_search"
    assert all(0 <= level <= 74 for row in summary["scores"] for level in row)
    before = store.read_bytes(layout.final_eval_summary_key("final", "heldout3"))
    with pytest.raises(InputError, match=r"^num_episodes: the level_search protocol does not"):
        pec_final_eval(**common, score="level_search", num_episodes=3)
    assert store.read_bytes(layout.final_eval_summary_key("final", "heldout3")) == before

    # A finished level_search result outlives an edit of final_level's settings (the flow's
    # `overrides`): reused, as its tampered levels show; a new ceiling evaluates again.
    key = layout.final_eval_expert_key("final", "heldout3", 0)
    marked = {**again, "levels": [74, 74, 74]}
    store.write_bytes(key, json.dumps(marked).encode())
    summary_key = layout.final_eval_summary_key("final", "heldout3")
    pec_final_eval(
        **common, score="level_search", overrides={"num_episodes": 5, "start_difficulty": 2}
    )
    assert json.loads(store.read_bytes(summary_key))["scores"][0] == [74, 74, 74]
    pec_final_eval(**common, score="level_search", overrides={"search_max_level": 40})
    lowered = json.loads(store.read_bytes(summary_key))
    assert lowered["protocol"]["ceiling"] == 40
    assert all(level <= 40 for level in lowered["scores"][0])
