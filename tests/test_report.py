"""Comparison report (numbers, plots, markdown), `pec status` history and `pec compare`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from pec.errors import InputError
from pec.evaluation.baseline import baseline_eval_key
from pec.evaluation.comparison import (
    comparison_numbers,
    comparison_rows,
    markdown_summary,
    report_data,
)
from pec.evaluation.designs_file import Design
from pec.evaluation.final_eval_summary import summary_payload
from pec.evaluation.score_summary import summarise_scores
from pec.iteration.frontier import frontier_candidates, write_scores
from pec.iteration.refit import refit_iteration
from pec.iteration.run_setup import initialise_run
from pec.maths.design_space import DesignSpace
from pec.presentation.cli import main as final_main
from pec.presentation.cli.history import iteration_history, status_history_table
from pec.presentation.report import render_plots, write_report
from pec.runs import layout
from pec.runs.config import build_config
from pec.runs.job_records import StoreSpec
from pec.runs.run import make_run, write_effective_config
from pec.runs.state_io import load_state
from pec.runs.store import LocalStore, Store

PNG = b"\x89PNG\r\n\x1a\n"
SPACE = DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010))
DESIGNS = [
    Design(id=0, GCR=0.76, spcf=0.002),
    Design(id=1, GCR=0.79, spcf=0.008),
    Design(id=2, GCR=0.85, spcf=0.003),
    Design(id=3, GCR=0.88, spcf=0.009),
]
MUS = [[0.78, 0.004], [0.86, 0.007]]
# expert 0 row, expert 1 row; oracle = [6, 4, 5, 9] with experts [0, 0, 1, 1]
SCORES = [[6, 4, 1, 2], [2, 4, 5, 9]]
BASELINE = [5, 4, 7, 3]


def payload(run: str = "rep") -> dict[str, Any]:
    points = [[d.GCR, d.spcf] for d in DESIGNS]
    summary = summarise_scores(SCORES, points, MUS, SPACE)
    import numpy as np

    return summary_payload(
        run_name=run,
        iteration=3,
        designs_stem="held",
        designs=DESIGNS,
        protocol={"num_episodes": 5, "start_difficulty": 2},
        mus=np.asarray(MUS),
        checkpoints=["a", "b"],
        summary=summary,
        space=SPACE,
    )


def test_comparison_numbers_hand_computed() -> None:
    numbers = comparison_numbers(report_data(payload(), BASELINE))
    assert numbers["pec_oracle_mean"] == pytest.approx(24 / 4)
    # routing by normalised distance: designs 0, 1 -> expert 0; 2, 3 -> expert 1 -> [6, 4, 5, 9]
    assert numbers["pec_routed_mean"] == pytest.approx(24 / 4)
    assert numbers["baseline_mean"] == pytest.approx(19 / 4)
    assert numbers["oracle_over_baseline"] == pytest.approx(24 / 19)
    # diffs 1, 0, -2, 6
    assert numbers["oracle_vs_baseline"] == {
        "wins": 2,
        "ties": 1,
        "losses": 1,
        "mean_diff": pytest.approx(5 / 4),
        "wins_by_expert": {"0": 1, "1": 1},
    }
    # design 1 is a 4-4 tie: the oracle expert is 0 (lower id)
    assert numbers["oracle_wins_by_expert"] == {0: 2, 1: 2}
    assert numbers["routed_hits"] == 4
    rows = comparison_rows(numbers)
    assert [r["policy"] for r in rows] == [
        "PEC oracle",
        "PEC routed",
        "generalist",
        "expert 0",
        "expert 1",
    ]
    assert rows[0]["over_baseline"] == pytest.approx(round(24 / 19, 3))
    assert (rows[0]["wins"], rows[0]["ties"], rows[0]["losses"]) == (2, 1, 1)
    text = markdown_summary(numbers, ["/x/score_histograms.png"])
    assert "| PEC oracle | 6.000 | 1.263 | 2 | 1 | 1 |" in text
    assert "| generalist | 4.750 | 1.000 |" in text
    assert "[score_histograms.png](/x/score_histograms.png)" in text


def test_plots_with_and_without_a_generalist() -> None:
    with_base = render_plots(report_data(payload(), BASELINE))
    assert sorted(with_base) == [
        "difference_histogram.png",
        "routing_ownership.png",
        "score_histograms.png",
        "spatial_map.png",
        "win_breakdown.png",
    ]
    assert all(png.startswith(PNG) and len(png) > 5000 for png in with_base.values())
    alone = render_plots(report_data(payload(), None))
    assert sorted(alone) == ["routing_ownership.png", "score_histograms.png", "spatial_map.png"]
    numbers = comparison_numbers(report_data(payload(), None))
    assert numbers["baseline_mean"] is None
    assert "no generalist evaluated" in markdown_summary(numbers, [])
    with pytest.raises(InputError, match="3 levels for 4 designs"):
        report_data(payload(), BASELINE[:3])


def test_write_report_reads_the_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.write_bytes(layout.final_eval_summary_key("rep", "held"), json.dumps(payload()).encode())
    keys = write_report(store, "rep", "held")
    assert "difference_histogram.png" not in keys
    assert keys["markdown"] == "rep/final_eval/held/report/report.md"
    store.write_bytes(baseline_eval_key("rep", "held"), json.dumps({"levels": BASELINE}).encode())
    assert (
        final_main(
            [
                "report",
                "--run_name",
                "rep",
                "--store",
                str(tmp_path / "store"),
                "--designs_stem",
                "held",
            ]
        )
        == 0
    )
    base = "rep/final_eval/held/report/"
    assert store.read_bytes(base + "win_breakdown.png").startswith(PNG)
    assert "| PEC oracle | 6.000 | 1.263 |" in store.read_text(base + "report.md")
    comparison = json.loads(store.read_bytes(base + "comparison.json"))
    assert comparison["oracle_vs_baseline"]["wins"] == 2
    assert (
        final_main(
            [
                "report",
                "--run_name",
                "rep",
                "--store",
                str(tmp_path / "store"),
                "--designs_stem",
                "other",
            ]
        )
        == 2
    )


# ---------------------------------------------------------------- status history and compare


def refitted_run(store: Store, name: str, scores: list[list[int]]) -> None:
    """One real iteration: candidates, hand-written scores, refit (writes coverage/history)."""
    config = build_config(
        {"K": 2, "N_init": 3, "F": 4, "pool_factor": 2, "seed": 1, "init_strategy": "grid"}
    )
    run = make_run(store, StoreSpec(location=store.root_uri), name, config)
    state, version, _ = initialise_run(run)
    write_effective_config(run)
    for k in range(2):
        store.write_bytes(
            layout.train_result_key(name, k, 0),
            json.dumps({"metrics": {"env_steps": 100.0 * (k + 1)}}).encode(),
        )
    selection = frontier_candidates(run, state)
    write_scores(run, state, selection, {0: scores[0], 1: scores[1]})
    refit_iteration(run, state, version)


def test_status_history_and_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = LocalStore(tmp_path / "store")
    refitted_run(store, "a", [[1, 2, 3, 6], [0, 0, 9, 1]])
    refitted_run(store, "b", [[0, 0, 0, 0], [2, 2, 2, 2]])
    loaded = load_state(store, "a")
    assert loaded is not None
    state = loaded[0]
    rows = iteration_history(store, state)
    assert len(rows) == 1  # iteration 1 has not started
    row = rows[0]
    assert row["frontier_means"] == [pytest.approx(3.0), pytest.approx(2.5)]
    assert row["won"] == [3, 1]
    assert row["env_steps"] == 300.0 and row["trained"] == 2
    assert row["coverage_after"] == state.coverage[-1].coverage
    console = Console(width=200, record=True)
    console.print(status_history_table(store, state))
    text = console.export_text()
    assert "[3.0, 2.5]" in text and "[3, 1]" in text and "300" in text
    store.write_bytes(layout.final_eval_summary_key("a", "held"), json.dumps(payload("a")).encode())
    store.write_bytes(layout.final_eval_summary_key("b", "held"), json.dumps(payload("b")).encode())
    assert final_main(["compare", "a", "b", "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "held: oracle mean" in out and "6.000" in out
    assert final_main(["compare", "a", "missing", "--store", str(tmp_path / "store")]) == 2


def test_report_shows_both_routers_with_intervals() -> None:
    data = payload()
    data["score_routed"] = [2, 4, 5, 9]
    data["score_routed_expert"] = [1, 0, 1, 1]
    numbers = comparison_numbers(report_data(data, BASELINE))
    assert numbers["pec_score_routed_mean"] == pytest.approx(20 / 4)
    assert numbers["score_routed_vs_baseline"]["wins"] == 1  # diffs -3, 0, -2, 6
    assert numbers["score_routed_vs_baseline"]["wins_by_expert"] == {"1": 1}
    oracle_ci = 1.96 * float(np.std([6, 4, 5, 9], ddof=1)) / 2
    assert numbers["ci95"]["PEC oracle"] == pytest.approx(oracle_ci)
    rows = [r["policy"] for r in comparison_rows(numbers)]
    assert rows[:4] == ["PEC oracle", "PEC routed", "PEC routed (score-informed)", "generalist"]
    text = markdown_summary(numbers, [])
    assert f"| PEC oracle | 6.000 ± {oracle_ci:.3f} |" in text
    assert "| PEC routed (score-informed) | 5.000 ± " in text
    assert "| generalist | 4.750 ± " in text


def test_report_refuses_a_generalist_scored_by_another_protocol(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pec.maths.protocols import describe

    store = LocalStore(tmp_path / "store")
    summary = payload()
    summary["protocol"] = {**describe("level_search", 5, 2, 74), "seed": 1}
    store.write_bytes(layout.final_eval_summary_key("rep", "held"), json.dumps(summary).encode())
    argv = ["report", "--run_name", "rep", "--store", str(tmp_path / "store")]
    for score, code in (("final_level", 2), ("level_search", 0)):
        protocol = {**describe(score, 5, 2, 74), "num_episodes": 5, "start_difficulty": 2}
        baseline = {"levels": BASELINE, "protocol": protocol}
        store.write_bytes(baseline_eval_key("rep", "held"), json.dumps(baseline).encode())
        capsys.readouterr()
        assert final_main([*argv, "--designs_stem", "held"]) == code
        err = capsys.readouterr().err
        if code == 2:
            assert err.count("\n") == 1
            assert "generalist on 'held' was scored with final_level (ceiling 7)" in err
            assert "run `pec baseline eval --score level_search`" in err
            assert not store.exists("rep/final_eval/held/report/report.md")
    assert store.exists("rep/final_eval/held/report/report.md")
