"""Final evaluation: the summary maths (oracle, routing, ties), designs files, the store step.

Expected numbers are worked out by hand in the comments; the store step runs with a fake
executor whose level for a design is a known function of (expert, design).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from support.trained_experts import give_experts_checkpoints

from pec.errors import InputError, JobError
from pec.evaluation.designs_file import Design, read_designs_file, uniform_designs
from pec.evaluation.final_eval_driver import run_final_eval
from pec.evaluation.final_eval_summary import read_summary, summary_from_payload
from pec.evaluation.score_summary import compare_scores, ratio, summarise_scores
from pec.iteration.run_setup import initialise_run
from pec.jobs.external import LogSink
from pec.jobs.runner import LocalJobRunner
from pec.jobs.spec import EvalJobResult, EvalJobSpec, TrainJobSpec
from pec.maths.design_space import DesignSpace
from pec.presentation.cli import main as final_main
from pec.runs import layout
from pec.runs.config import build_config
from pec.runs.job_records import StoreSpec, TrainJobResult
from pec.runs.run import Run, make_run, write_effective_config
from pec.runs.state import PECState
from pec.runs.store import LocalStore

UNIT = DesignSpace(gcr=(0.0, 1.0), spcf=(0.0, 1.0))


# ---------------------------------------------------------------- summary maths


def test_oracle_is_max_and_ties_go_to_lower_id() -> None:
    scores = [
        [3, 5, 0, 7],
        [4, 5, 0, 2],
        [1, 2, 0, 7],
    ]
    designs = [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9], [0.2, 0.8]]
    mus = [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]
    s = summarise_scores(scores, designs, mus, UNIT)
    assert s.oracle.tolist() == [4, 5, 0, 7]
    # design 1: experts 0 and 1 tie at 5 -> 0; design 2: all zero -> 0; design 3: 0 and 2 tie -> 0
    assert s.oracle_expert.tolist() == [1, 0, 0, 0]
    assert s.oracle_mean == pytest.approx(16 / 4)


def test_routed_score_is_the_nearest_centre_experts_score() -> None:
    scores = [
        [3, 5, 0, 7],
        [4, 5, 0, 2],
        [1, 2, 6, 7],
    ]
    designs = [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9], [0.2, 0.8]]
    mus = [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]
    s = summarise_scores(scores, designs, mus, UNIT)
    # design 3 (0.2, 0.8): squared distances 0.49, 0.18, 0.50 -> expert 1
    assert s.routed_expert.tolist() == [0, 1, 2, 1]
    assert s.routed.tolist() == [3, 5, 6, 2]
    assert s.routed_mean == pytest.approx(16 / 4)
    assert s.oracle.tolist() == [4, 5, 6, 7]
    # routed == oracle on designs 1 and 2 only
    assert s.routed_hits == 2
    assert s.expert_means() == pytest.approx([15 / 4, 11 / 4, 16 / 4])


def test_routing_is_normalised_by_the_design_box() -> None:
    space = DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010))
    mus = [[0.785, 0.00325], [0.855, 0.00775]]
    # Physically nearer expert 0 (the GCR gap dominates) but nearer expert 1 in the unit box.
    s = summarise_scores([[10], [20]], [[0.80, 0.0095]], mus, space)
    assert s.routed_expert.tolist() == [1]
    assert s.routed.tolist() == [20]


def test_routing_ties_go_to_lower_id() -> None:
    s = summarise_scores([[1], [9]], [[0.5, 0.3]], [[0.25, 0.5], [0.75, 0.5]], UNIT)
    assert s.routed_expert.tolist() == [0]
    assert s.routed.tolist() == [1]


def test_unevaluated_expert_is_skipped_by_oracle_and_routing() -> None:
    nan = float("nan")
    scores = [[nan, nan], [2.0, 3.0], [4.0, 1.0]]
    designs = [[0.1, 0.1], [0.9, 0.9]]
    mus = [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]
    s = summarise_scores(scores, designs, mus, UNIT)
    assert s.evaluated == [1, 2]
    assert s.oracle.tolist() == [4, 3]
    assert s.oracle_expert.tolist() == [2, 1]
    # design 0 sits on expert 0's centre, but expert 0 has no policy: nearest evaluated is 1
    assert s.routed_expert.tolist() == [1, 2]
    assert s.routed.tolist() == [2, 1]
    assert s.expert_means() == [None, 2.5, 2.5]


def test_summary_rejects_inconsistent_inputs() -> None:
    nan = float("nan")
    with pytest.raises(InputError, match="expert 0 are missing for some designs"):
        summarise_scores([[1.0, nan], [2.0, 3.0]], [[0, 0], [1, 1]], [[0, 0], [1, 1]], UNIT)
    with pytest.raises(InputError, match="no expert was evaluated"):
        summarise_scores([[nan], [nan]], [[0, 0]], [[0, 0], [1, 1]], UNIT)
    with pytest.raises(InputError, match="2 designs but the score matrix has 1"):
        summarise_scores([[1], [2]], [[0, 0], [1, 1]], [[0, 0], [1, 1]], UNIT)
    with pytest.raises(InputError, match="3 centres"):
        summarise_scores([[1], [2]], [[0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]], UNIT)
    with pytest.raises(InputError, match="infinite"):
        summarise_scores([[float("inf")]], [[0, 0]], [[0, 0]], UNIT)


def test_compare_counts_wins_ties_losses_and_the_winning_expert() -> None:
    c = compare_scores([5, 3, 2, 8, 0], [4, 3, 6, 1, 0], [1, 0, 0, 1, 2])
    assert c.diff.tolist() == [1, 0, -4, 7, 0]
    assert (c.wins, c.ties, c.losses) == (2, 2, 1)
    assert c.wins_by_expert == {1: 2}
    assert c.mean_diff == pytest.approx(4 / 5)
    with pytest.raises(InputError, match="differ in length"):
        compare_scores([1, 2], [1], [0, 0])


def test_ratio_is_none_for_a_zero_denominator() -> None:
    assert ratio(6.0, 4.0) == pytest.approx(1.5)
    assert ratio(1.0, 0.0) is None


# ---------------------------------------------------------------- designs files


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{}", "non-empty JSON list"),
        ("[]", "non-empty JSON list"),
        ('[{"id": 0, "GCR": 0.8}]', "entry 0: spcf"),
        ('[{"id": 0, "GCR": 0.8, "spcf": 0.005, "x": 1}]', "entry 0: x"),
        (
            '[{"id": 0, "GCR": 0.8, "spcf": 0.005}, {"id": 0, "GCR": 0.8, "spcf": 0.005}]',
            "id 0 appears twice",
        ),
        ('[{"id": 0, "GCR": 0.95, "spcf": 0.005}]', "outside the design space"),
        ('[{"id": 0, "GCR": NaN, "spcf": 0.005}]', "must be finite"),
        ('[{"id": 0, "GCR": 0.8, "spcf": 0.005}', "not valid JSON"),
    ],
)
def test_designs_file_validation(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "designs.json"
    path.write_text(content)
    space = DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010))
    with pytest.raises(InputError, match=message):
        read_designs_file(path, space)


def test_designs_uniform_command_writes_a_valid_reproducible_file(tmp_path: Path) -> None:
    out = tmp_path / "test_5.json"
    args = [
        "designs",
        "uniform",
        "--n",
        "5",
        "--seed",
        "42",
        "--out",
        str(out),
        "--GCR_range",
        "0.75,0.89",
        "--spcf_range",
        "0.001,0.010",
    ]
    assert final_main(args) == 0
    space = DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010))
    designs = read_designs_file(out, space)
    assert designs == uniform_designs(space, 5, 42)
    assert [d.id for d in designs] == [0, 1, 2, 3, 4]
    assert (
        final_main(
            ["designs", "uniform", "--n", "0", "--out", str(out), "--GCR_range", "0.75,0.89"]
        )
        == 2
    )


# ---------------------------------------------------------------- store-level step

RUN = "final"


def level_of(expert_id: int, gcr: float, spcf: float) -> int:
    """Expert 0 is good at low GCR, expert 1 at high GCR; a deterministic toy."""
    good = gcr < 0.82 if expert_id == 0 else gcr >= 0.82
    return 10 + int(spcf * 1000) if good else 3


class FakeExecutor:
    def __init__(self, fail: set[int] | None = None) -> None:
        self.eval_specs: list[EvalJobSpec] = []
        self.fail = fail or set()

    def execute(
        self, spec: TrainJobSpec | EvalJobSpec, log: LogSink | None = None
    ) -> TrainJobResult | EvalJobResult:
        assert isinstance(spec, EvalJobSpec)
        self.eval_specs.append(spec)
        if spec.expert_id in self.fail:
            raise JobError(f"expert {spec.expert_id} exploded")
        levels = [level_of(spec.expert_id, g, s) for g, s in spec.designs]
        return EvalJobResult(levels=levels, expert_id=spec.expert_id)


def _safe_checkpoint() -> bytes:
    buffer = io.BytesIO()
    torch.save({"actor_state_dict": {}, "iter": 0}, buffer)
    return buffer.getvalue()


_SAFE_CHECKPOINT = _safe_checkpoint()


def trained_run(
    tmp_path: Path, K: int = 2, score: str | None = "final_level"
) -> tuple[Run, PECState]:
    """score: the original's protocol by default (these tests check num_episodes and
    start_difficulty); None leaves the model default."""
    store = LocalStore(tmp_path / "store")
    config = build_config(
        {
            "K": K,
            "centers": [[0.78, 0.005], [0.86, 0.005]][:K],
            "N_init": 5,
            "num_episodes": 3,
            "start_difficulty": 1,
        },
        {"score": score},
    )
    run = make_run(store, StoreSpec(location=store.root_uri), RUN, config)
    state, version, _ = initialise_run(run)
    write_effective_config(run)
    # the executor is fake; the preflight reads the checkpoints
    checkpoints = [_SAFE_CHECKPOINT] * len(state.experts)
    return run, give_experts_checkpoints(store, RUN, state, version, checkpoints)


DESIGNS = [
    Design(id=7, GCR=0.76, spcf=0.002),
    Design(id=8, GCR=0.80, spcf=0.009),
    Design(id=9, GCR=0.88, spcf=0.004),
]


def test_run_final_eval_writes_results_and_summary(tmp_path: Path) -> None:
    run, state = trained_run(tmp_path)
    executor = FakeExecutor()
    summary = run_final_eval(
        run, state, DESIGNS, "held", LocalJobRunner(executor), num_episodes=4, start_difficulty=2
    )
    # expert 0: 12, 19, 3 ; expert 1: 3, 3, 14
    assert summary["scores"] == [[12, 19, 3], [3, 3, 14]]
    assert summary["oracle"] == [12, 19, 14]
    assert summary["oracle_expert"] == [0, 0, 1]
    assert summary["oracle_mean"] == pytest.approx(45 / 3)
    # centres at GCR 0.78 and 0.86, same spcf: routing follows GCR (midpoint 0.82)
    assert summary["routed_expert"] == [0, 0, 1]
    assert summary["routed_mean"] == pytest.approx(45 / 3)
    assert summary["protocol"]["num_episodes"] == 4
    assert summary["protocol"]["start_difficulty"] == 2
    assert [d["id"] for d in summary["designs"]] == [7, 8, 9]
    assert summary["design_space"] == {"GCR": [0.75, 0.89], "spcf": [0.001, 0.01]}
    # every expert got the same seed (common random numbers) and the same designs
    assert len({s.seed for s in executor.eval_specs}) == 1
    stored = read_summary(run.store, RUN, "held")
    assert stored == summary
    assert summary_from_payload(stored).routed.tolist() == [12, 19, 14]
    per_expert = json.loads(run.store.read_bytes(layout.final_eval_expert_key(RUN, "held", 1)))
    assert per_expert["levels"] == [3, 3, 14]
    assert per_expert["designs"][2] == {"id": 9, "GCR": 0.88, "spcf": 0.004, "level": 14}


def test_final_eval_reuses_finished_experts_and_reruns_on_protocol_change(tmp_path: Path) -> None:
    run, state = trained_run(tmp_path)
    run_final_eval(
        run,
        state,
        DESIGNS,
        "held",
        LocalJobRunner(FakeExecutor()),
        num_episodes=4,
        start_difficulty=2,
    )
    again = FakeExecutor()
    seen: list[tuple[int, bool]] = []
    run_final_eval(
        run,
        state,
        DESIGNS,
        "held",
        LocalJobRunner(again),
        num_episodes=4,
        start_difficulty=2,
        on_expert=lambda k, levels, reused: seen.append((k, reused)),
    )
    assert again.eval_specs == []
    assert seen == [(0, True), (1, True)]
    changed = FakeExecutor()
    run_final_eval(
        run, state, DESIGNS, "held", LocalJobRunner(changed), num_episodes=5, start_difficulty=2
    )
    assert [s.expert_id for s in changed.eval_specs] == [0, 1]


def test_failed_expert_becomes_a_null_row_and_is_not_routed_to(tmp_path: Path) -> None:
    run, state = trained_run(tmp_path)
    summary = run_final_eval(
        run,
        state,
        DESIGNS,
        "held",
        LocalJobRunner(FakeExecutor(fail={1})),
        num_episodes=4,
        start_difficulty=2,
    )
    assert summary["scores"] == [[12, 19, 3], None]
    assert summary["experts"][1]["evaluated"] is False
    assert summary["routed_expert"] == [0, 0, 0]
    assert summary["routed"] == [12, 19, 3]
    assert summary["expert_means"] == [pytest.approx(34 / 3), None]


def test_eval_final_command_rejects_a_bad_designs_file_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = trained_run(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": 0, "GCR": 0.99, "spcf": 0.005}]')
    code = final_main(
        [
            "eval-final",
            "--run_name",
            RUN,
            "--store",
            str(tmp_path / "store"),
            "--designs_file",
            str(bad),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "outside the design space" in err and err.count("\n") == 1
    assert run.store.list(layout.run_prefix(RUN) + "final_eval/") == []


def test_score_informed_routing_learns_from_other_evaluations_never_its_own(
    tmp_path: Path,
) -> None:
    run, state = trained_run(tmp_path)
    runner = LocalJobRunner(FakeExecutor())
    held = run_final_eval(run, state, DESIGNS, "held", runner, num_episodes=4, start_difficulty=2)
    # No other evaluation yet: nothing to learn from, so it routes like nearest centre.
    assert held["score_router"]["evidence_designs"] == 0
    # The protocol and its ceiling are recorded (this run keeps the original's final level).
    assert held["protocol"]["score"] == "final_level" and held["protocol"]["ceiling"] == 6
    assert held["score_routed_expert"] == held["routed_expert"] == [0, 0, 1]
    # A frontier evaluation of iteration 0 that says the opposite near these designs.
    candidates = {
        "candidates": [{"id": i, "GCR": d.GCR, "spcf": d.spcf} for i, d in enumerate(DESIGNS)]
    }
    run.store.write_bytes(layout.candidates_key(RUN, 0), json.dumps(candidates).encode())
    scores = {"iteration": 0, "scores": [[1, 1, 9], [9, 9, 1]]}
    run.store.write_bytes(layout.scores_key(RUN, 0), json.dumps(scores).encode())
    other = run_final_eval(run, state, DESIGNS, "other", runner, num_episodes=4, start_difficulty=2)
    # Evidence: the frontier (3 designs) and "held" (3 designs) — each design's own
    # neighbours weigh 1/0.001, so both sources count; the frontier's 9s vs held's 12/19/14.
    assert other["score_router"]["evidence_designs"] == 6
    assert other["score_router"]["excluded_designs_set"] == "other"
    # Summing exact-position evidence: expert 0 gets (1 + 12) / 2, expert 1 (9 + 3) / 2 at
    # design 7, so expert 0 wins there; at design 9 expert 0 (9 + 3) / 2 vs 1 (1 + 14) / 2.
    assert other["score_routed_expert"][0] == 0 and other["score_routed_expert"][2] == 1
    assert other["score_routed"] == [
        other["scores"][k][i] for i, k in enumerate(other["score_routed_expert"])
    ]
    # Summarising "held" again leaves its own scores out: frontier + "other" only.
    again = run_final_eval(run, state, DESIGNS, "held", runner, num_episodes=4, start_difficulty=2)
    assert again["score_router"]["evidence_designs"] == 6


def test_a_result_is_reused_only_under_the_protocol_that_produced_it(tmp_path: Path) -> None:
    from pec.evaluation.baseline import baseline_record_key, evaluate_baseline

    run, state = trained_run(tmp_path)  # configured: final_level, 3 episodes from level 1
    first = FakeExecutor()
    summary = run_final_eval(
        run, state, DESIGNS, "held", LocalJobRunner(first), num_episodes=3, start_difficulty=1
    )
    assert [s.score for s in first.eval_specs] == ["final_level", "final_level"]
    assert summary["protocol"]["score"] == "final_level"
    # The same designs and checkpoints under the other protocol: evaluated again, recorded.
    other = FakeExecutor()
    summary = run_final_eval(
        run,
        state,
        DESIGNS,
        "held",
        LocalJobRunner(other),
        num_episodes=3,
        start_difficulty=1,
        score="level_search",
    )
    assert [(s.expert_id, s.score) for s in other.eval_specs] == [
        (0, "level_search"),
        (1, "level_search"),
    ]
    assert summary["protocol"]["score"] == "level_search" and summary["protocol"]["ceiling"] == 74
    stored = json.loads(run.store.read_bytes(layout.final_eval_expert_key(RUN, "held", 0)))
    assert stored["protocol"]["score"] == "level_search"
    # ... and back: the level_search result is not taken for a final_level one either.
    back = FakeExecutor()
    run_final_eval(
        run, state, DESIGNS, "held", LocalJobRunner(back), num_episodes=3, start_difficulty=1
    )
    assert [s.score for s in back.eval_specs] == ["final_level", "final_level"]
    # The generalist follows the same rule.
    checkpoint = layout.best_checkpoint_key(RUN, 0, 0)
    run.store.write_bytes(
        baseline_record_key(RUN), json.dumps({"checkpoint": run.store.uri(checkpoint)}).encode()
    )
    base = FakeExecutor()
    for score in ("final_level", "final_level", "level_search", "level_search"):
        payload = evaluate_baseline(
            run,
            state,
            DESIGNS,
            "held",
            LocalJobRunner(base),
            num_episodes=3,
            start_difficulty=1,
            score=score,
        )
        assert payload["protocol"]["score"] == score
    assert [s.score for s in base.eval_specs] == ["final_level", "level_search"]


@pytest.mark.parametrize("command", [["eval-final"], ["baseline", "eval"]])
@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--num_episodes", "5"], "--num_episodes"),
        (["--start_difficulty", "3"], "--start_difficulty"),
        (["--score", "level_search", "--num_episodes", "5"], "--num_episodes"),
    ],
)
def test_final_level_flags_under_level_search_are_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    flags: list[str],
    named: str,
) -> None:
    trained_run(tmp_path)
    store = tmp_path / "store"
    designs = tmp_path / "held.json"
    designs.write_text(json.dumps([d.model_dump() for d in DESIGNS]))
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    argv = [*command, "--run_name", RUN, "--store", str(store), "--designs_file", str(designs)]
    # The flags alone under this run's final_level are fine; level_search must refuse them.
    if "--score" not in flags:
        argv += ["--set", "score=level_search"]
    assert final_main([*argv, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"pec: error: {named}: the level_search protocol does not use it")
    assert f"drop {named}, or pass --score final_level" in err
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before  # nothing written
    # An unknown protocol is one line too (argparse's choices).
    assert final_main([*argv, "--score", "best"]) == 2
    assert "--score: invalid choice: 'best'" in capsys.readouterr().err


def test_a_run_without_score_is_finally_evaluated_by_level_search(tmp_path: Path) -> None:
    run, state = trained_run(tmp_path, score=None)  # the model default
    executor = FakeExecutor()
    summary = run_final_eval(
        run, state, DESIGNS, "held", LocalJobRunner(executor), num_episodes=3, start_difficulty=1
    )
    assert [s.score for s in executor.eval_specs] == ["level_search", "level_search"]
    assert all(s.search_max_level == 74 for s in executor.eval_specs)
    protocol = summary["protocol"]
    assert (protocol["score"], protocol["ceiling"], protocol["search_max_level"]) == (
        "level_search",
        74,
        74,
    )


def test_final_protocol_follows_the_run_unless_told_otherwise() -> None:
    from pec.evaluation.final_eval_jobs import FinalProtocol, final_protocol

    searched = build_config({"num_episodes": 9, "start_difficulty": 4})  # level_search
    assert final_protocol(searched) == FinalProtocol("level_search", 9, 4)
    assert final_protocol(searched, "final_level", 5) == FinalProtocol("final_level", 5, 4)
    assert final_protocol(searched, "final_level", None, 0) == FinalProtocol("final_level", 9, 0)
    original = build_config({"score": "final_level", "num_episodes": 9, "start_difficulty": 4})
    assert final_protocol(original, None, 2, 3) == FinalProtocol("final_level", 2, 3)
    assert final_protocol(original, "level_search") == FinalProtocol("level_search", 9, 4)
    with pytest.raises(InputError, match=r"^--num_episodes 0: pass 1\.\.100,000 episodes$"):
        final_protocol(original, None, 0)
    with pytest.raises(InputError, match=r"^start_difficulty 75: the obstacle level"):
        final_protocol(original, None, None, 75, flag="")
    with pytest.raises(InputError, match=r"^score 'best': choose one of final_level, level_sea"):
        final_protocol(original, "best", flag="")
    with pytest.raises(InputError, match=r"^start_difficulty: the level_search protocol does no"):
        final_protocol(original, "level_search", None, 2, flag="")


# ---------------------------------------------------------------- what defines a level search


def _reconfigured(run: Run, **update: object) -> Run:
    """The same run (store, state) under a config with `update` applied, as after an edit."""
    return make_run(run.store, run.store_spec, RUN, build_config(run.config.model_dump(), update))


def test_level_search_final_results_survive_unused_settings_only(tmp_path: Path) -> None:
    from pec.evaluation.final_eval_jobs import eval_seed

    run, state = trained_run(tmp_path, score="level_search")

    def evaluate(at: Run) -> list[int]:
        executor = FakeExecutor()
        run_final_eval(
            at,
            state,
            DESIGNS,
            "held",
            LocalJobRunner(executor),
            num_episodes=at.config.num_episodes,
            start_difficulty=at.config.start_difficulty,
        )
        return [s.expert_id for s in executor.eval_specs]

    assert evaluate(run) == [0, 1]
    record = {"score": "level_search", "search_max_level": 74, "ceiling": 74}
    seed = eval_seed(run, "held")
    summary = read_summary(run.store, RUN, "held")
    assert summary["protocol"] == {**record, "seed": seed, "backend": "mujoco"}
    key = layout.final_eval_expert_key(RUN, "held", 0)
    assert json.loads(run.store.read_bytes(key))["protocol"] == {**record, "seed": seed}
    # num_episodes / start_difficulty do not define a level search: nothing evaluated again.
    assert evaluate(_reconfigured(run, num_episodes=9, start_difficulty=5)) == []
    # A result an older version wrote with those unused keys is still this protocol's.
    older = json.loads(run.store.read_bytes(key))
    older["protocol"].update(num_episodes=3, start_difficulty=1)
    run.store.write_bytes(key, json.dumps(older).encode())
    assert evaluate(run) == []
    # What does define it evaluates again (and the next call reuses the new results).
    for update in ({"search_max_level": 40}, {"seed": run.config.seed + 1}):
        changed = _reconfigured(run, **update)
        assert evaluate(changed) == [0, 1]
        assert evaluate(changed) == []
        assert evaluate(run) == [0, 1]  # back to the first protocol: evaluated again


def test_level_search_frontier_scores_survive_unused_settings_only(tmp_path: Path) -> None:
    from pec.iteration.driver import evaluate_frontier

    run, state = trained_run(tmp_path, score="level_search")

    def evaluate(at: Run) -> tuple[list[int], dict[str, object]]:
        executor = FakeExecutor()
        scores = evaluate_frontier(at, state, LocalJobRunner(executor))
        return [s.expert_id for s in executor.eval_specs], scores

    evaluated, first = evaluate(run)
    assert evaluated == [0, 1]
    protocol = first["protocol"]
    assert isinstance(protocol, dict)
    assert "num_episodes" not in protocol and "start_difficulty" not in protocol
    assert {
        k: protocol[k] for k in ("score", "search_max_level", "ceiling", "seed", "backend")
    } == {
        "score": "level_search",
        "search_max_level": 74,
        "ceiling": 74,
        "seed": run.config.seed,
        "backend": "mujoco",
    }
    # Unused settings changed: the finished scores.json is this iteration's, as it was.
    assert evaluate(_reconfigured(run, num_episodes=9, start_difficulty=5)) == ([], first)
    # An older version's scores.json that also recorded them is reused too.
    key = layout.scores_key(RUN, state.iteration)
    older = {**first, "protocol": {**protocol, "num_episodes": 3, "start_difficulty": 1}}
    run.store.write_bytes(key, json.dumps(older).encode())
    assert evaluate(run) == ([], older)
    # The ceiling or the seed changed: evaluated again, under the new protocol.
    for name, value in (("search_max_level", 40), ("seed", run.config.seed + 1)):
        evaluated, scores = evaluate(_reconfigured(run, **{name: value}))
        assert evaluated == [0, 1]
        assert isinstance(scores["protocol"], dict) and scores["protocol"][name] == value
        assert evaluate(run)[0] == [0, 1]


def test_final_level_frontier_scores_follow_its_episodes(tmp_path: Path) -> None:
    from pec.iteration.driver import evaluate_frontier

    run, state = trained_run(tmp_path)  # final_level: num_episodes defines the score
    evaluate_frontier(run, state, LocalJobRunner(FakeExecutor()))
    again = FakeExecutor()
    scores = evaluate_frontier(_reconfigured(run, num_episodes=4), state, LocalJobRunner(again))
    assert [s.num_episodes for s in again.eval_specs] == [4, 4]
    assert scores["protocol"]["num_episodes"] == 4 and scores["protocol"]["ceiling"] == 5
    assert "search_max_level" not in scores["protocol"]


def test_final_level_flags_and_overrides_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The flags pass under final_level (and become the config); a `--set` of them under
    level_search is kept with one warning line, since it applies to final_level scoring."""
    from pec.presentation.cli.common import open_run_from_args
    from pec.presentation.cli.main import build_parser

    trained_run(tmp_path, score="level_search")
    parser = build_parser()
    common = ["--run_name", RUN, "--store", str(tmp_path / "store")]
    keys = ["F", "sampling_mode", "num_episodes", "start_difficulty"]

    def open_with(*argv: str) -> Run:
        return open_run_from_args(parser.parse_args(["evaluate-frontier", *common, *argv]), keys)

    run = open_with("--set", "score=final_level", "--num_episodes", "5", "--start_difficulty", "2")
    assert (run.config.score, run.config.num_episodes, run.config.start_difficulty) == (
        "final_level",
        5,
        2,
    )
    assert capsys.readouterr().err == ""
    run = open_with("--set", "num_episodes=7")
    assert run.config.num_episodes == 7 and run.config.score == "level_search"
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("pec: warning: --set num_episodes=7: the level_search protocol does")
    # eval-final's own --score decides: under --score final_level the override is used.
    flags = ["--designs_file", "x.json", "--score", "final_level", "--set", "start_difficulty=3"]
    args = parser.parse_args(["eval-final", *common, *flags])
    assert open_run_from_args(args).config.start_difficulty == 3
    assert capsys.readouterr().err == ""
