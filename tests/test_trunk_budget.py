"""Fork from a trunk (`trunk_share`) and budget that follows wins (`budget_rule: wins`).

Real MuJoCo training on the tiny config through `pec run` and the step commands: the trunk is
a job like an expert (its result recorded, reused on a re-run, a failure stops the iteration
with one line), every expert's iteration 0 warm-starts from it, its env steps count in PEC's
budget (which stays the equal split's total), and an expert that won no frontier candidate
gives its PPO iterations to the winners, recorded in the state and shown by `pec status`.
The flow's side is in tests/test_flow_pec.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import pec.jobs.executors as executors_module
from pec.errors import JobError
from pec.evaluation.baseline import step_budget, training_records
from pec.jobs.run import run_job as real_run_job
from pec.jobs.spec import EvalJobSpec, TrainJobSpec
from pec.maths.budget import budget_by_share, budget_by_wins, trunk_split, won_counts
from pec.presentation.cli import main
from pec.runs import layout
from pec.runs.run import load_run_state, open_run
from pec.runs.state import PECState, parse_state
from pec.runs.state_io import dump_state

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")
ROLLOUT, ENVS = 8, 4  # tiny.yaml: num_steps_per_env, num_envs


# ---------------------------------------------------------------- the maths


@pytest.mark.parametrize("K", [1, 2, 3, 7])
@pytest.mark.parametrize("iter0", [1, 2, 3, 200, 1601])
@pytest.mark.parametrize("share", [0.0, 1e-6, 0.1, 0.5, 0.9, 0.999])
def test_trunk_split_keeps_iteration_zeros_total(K: int, iter0: int, share: float) -> None:
    trunk, expert = trunk_split(K, iter0, share)
    assert trunk + K * expert == K * iter0
    assert expert >= 1 and trunk >= 0
    if trunk == 0:
        assert expert == iter0  # no trunk: the original's from-scratch start


def test_trunk_split_of_the_benchmark_and_bad_shares() -> None:
    assert trunk_split(2, 200, 0.5) == (200, 100)
    assert trunk_split(2, 100, 0.5) == (100, 50)
    assert trunk_split(3, 300, 0.0) == (0, 300)
    for share in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="share"):
            trunk_split(2, 100, share)


def test_budget_follows_wins() -> None:
    assert budget_by_wins([4, 0], 2) == [4, 0]
    assert budget_by_wins([0, 9], 100) == [0, 200]
    assert budget_by_wins([3, 0, 1], 5) == [8, 0, 7]  # remainder to the lowest id
    assert budget_by_wins([1, 1, 1], 5) == [5, 5, 5]  # every expert won: equal split
    assert budget_by_wins([0, 0], 5) == [5, 5]  # no evidence: equal split
    for won in ([0, 1, 0, 0, 2], [5, 0, 0], [0, 0, 0, 1]):
        assert sum(budget_by_wins(won, 7)) == 7 * len(won)
    assert budget_by_share([1, 14], 50) == [7, 93]  # 100 x 1/15 = 6.67 -> 7 by remainder
    assert budget_by_share([0, 3], 50) == [0, 100]
    assert budget_by_share([1, 1, 1], 5) == [5, 5, 5]
    assert budget_by_share([0, 0], 5) == [5, 5]  # no evidence: the equal split
    for won in ([0, 1, 0, 0, 2], [5, 3, 1], [7, 0, 0, 1], [2, 2, 3]):
        split = budget_by_share(won, 11)
        assert sum(split) == 11 * len(won)
        assert all((b == 0) == (w == 0) or sum(won) == 0 for b, w in zip(split, won, strict=True))
        for i, j in ((i, j) for i in range(len(won)) for j in range(len(won))):
            if won[i] > won[j]:
                assert split[i] >= split[j]  # more wins, never less budget
    nan = float("nan")
    # outright wins only: a tie (0/0 included) is nobody's, an unevaluated expert is skipped
    assert won_counts([[3, 0, 2, 1, nan], [1, 0, 2, 4, 7]]) == [1, 2]
    assert won_counts([[nan, nan], [0, 5]]) == [0, 2]
    assert won_counts([[0, 0], [0, 0]]) == [0, 0]  # -> budget_by_wins: the equal split
    with pytest.raises(ValueError, match="matrix"):
        won_counts([1, 2])


# ---------------------------------------------------------------- helpers


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def state_of(store: Path, name: str) -> PECState:
    return parse_state((store / name / "pec_state.json").read_bytes(), name)


@pytest.fixture
def job_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int, int]]:
    """Every job the in-process executor really runs: (kind, role, expert, iteration)."""
    calls: list[tuple[str, str, int, int]] = []

    def recording(spec: TrainJobSpec | EvalJobSpec, on_progress: Any = None) -> Any:
        role = spec.role if isinstance(spec, TrainJobSpec) else "expert"
        calls.append((spec.kind, role, spec.expert_id, spec.iteration))
        return real_run_job(spec, on_progress=on_progress)

    monkeypatch.setattr(executors_module, "run_job", recording)
    return calls


# ---------------------------------------------------------------- fork from a trunk


def test_pec_run_forks_every_expert_from_one_trunk(
    tmp_path: Path, job_calls: list[tuple[str, str, int, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s"
    common = ["--run_name", "t", "--store", str(store)]
    # tiny: K=2, max_iterations_iter0=2 -> the trunk 2 PPO iterations, each expert 1 at it 0
    assert main(["run", *common, "--config", TINY, "--trunk_share", "0.5"]) == 0
    assert job_calls[0] == ("train", "trunk", 2, 0)  # first, once, before any expert
    assert [c for c in job_calls if c[1] == "trunk"] == [job_calls[0]]

    state = state_of(store, "t")
    assert state.trunk is not None and state.trunk.trained and state.trunk.ppo_iterations == 2
    trunk_dir = store / layout.trunk_dir("t")
    assert state.trunk.checkpoint == str(trunk_dir / "model_last.pt")  # the end of its share
    assert (trunk_dir / "model_best.pt").is_file()
    trunk_result = read_json(trunk_dir / "result.json")
    assert trunk_result["metrics"]["iterations"] == 2
    assert trunk_result["metrics"]["env_steps"] == 2 * ROLLOUT * ENVS
    for k in (0, 1):
        # forked: the PPO counter continues from the trunk's 2 iterations, for 1 more
        result = read_json(store / layout.train_result_key("t", k, 0))
        assert result["metrics"]["iterations"] == 3
        assert result["metrics"]["env_steps"] == 1 * ROLLOUT * ENVS
    assert [(b.iteration, b.rule, b.ppo_iterations) for b in state.budgets] == [
        (0, "trunk", [1, 1]),
        (1, "equal", [2, 2]),
    ]

    # the trunk counts in PEC's budget, which is exactly the from-scratch split's total
    run = open_run("t", str(store), None, {})
    budget = step_budget(training_records(run, state))
    assert budget.env_steps == (2 * 2 + 2 * 2) * ROLLOUT * ENVS
    assert budget.rollout_steps == ROLLOUT
    assert [r.expert_id for r in budget.records] == [-1, 0, 1, 0, 1]

    capsys.readouterr()
    assert main(["status", *common]) == 0
    out = capsys.readouterr().out
    assert "trunk: trained, 2 PPO iterations" in out and "trunk" in out


def test_a_trunk_is_trained_once_and_a_failed_one_stops_iteration_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s"
    common = ["--run_name", "f", "--store", str(store), "--config", TINY]
    calls: list[tuple[str, int]] = []
    broken = {"trunk"}

    def flaky(spec: TrainJobSpec | EvalJobSpec, on_progress: Any = None) -> Any:
        who = spec.role if isinstance(spec, TrainJobSpec) else "eval"
        calls.append((who, spec.expert_id))
        if who in broken or (who == "expert" and spec.expert_id in broken_experts):
            raise JobError(f"injected failure of {who}")
        return real_run_job(spec, on_progress=on_progress)

    broken_experts: set[int] = set()
    monkeypatch.setattr(executors_module, "run_job", flaky)
    capsys.readouterr()
    assert main(["run", *common, "--set", "trunk_share=0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the trunk has no checkpoint" in err
    assert calls == [("trunk", 2)]  # no expert trained without a trunk to fork from
    assert state_of(store, "f").iteration == 0

    # the trunk now trains, expert 1 fails without a checkpoint: the iteration stops ...
    broken.clear()
    broken_experts.add(1)
    calls.clear()
    assert main(["run", *common, "--set", "trunk_share=0.5"]) == 2
    assert ("trunk", 2) in calls
    assert (store / layout.trunk_dir("f") / "result.json").is_file()
    # ... and the re-run reuses the recorded trunk and expert 0: only expert 1 trains again
    broken_experts.clear()
    calls.clear()
    assert main(["run", *common, "--set", "trunk_share=0.5", "--set", "max_pec_iterations=1"]) == 0
    assert [c for c in calls if c[0] != "eval"] == [("expert", 1)]
    state = state_of(store, "f")
    assert state.iteration == 1 and state.trunk is not None and state.trunk.trained


def test_a_trunk_killed_with_no_retry_left_is_kept_as_partial_and_forked_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGKILL of the trunk's job process after its first PPO iteration (pec.faults)."""
    import yaml

    settings = yaml.safe_load(Path(TINY).read_text())["backend_settings"]
    settings["ppo"] = {**settings["ppo"], "save_interval": 1}
    monkeypatch.setenv("PEC_FAULT_POINT", "train-progress:1")
    monkeypatch.setenv("PEC_FAULT_ONCE_FILE", str(tmp_path / "fired"))  # the first job only
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    store = tmp_path / "s"
    sets = {
        "executor": "subprocess",
        "trunk_share": 0.5,
        "max_iterations_iter0": 4,  # the trunk 4 PPO iterations, each expert 2
        "max_pec_iterations": 1,
        "job_retry_delays_s": [],
        "backend_settings": settings,
    }
    argv = ["run", "--run_name", "p", "--store", str(store), "--config", TINY]
    for key, value in sets.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    assert main(argv) == 0
    assert (tmp_path / "fired").exists()  # the trunk's job really was killed
    state = state_of(store, "p")
    assert state.trunk is not None and state.trunk.trained
    assert state.trunk.checkpoint == str(store / layout.trunk_dir("p") / "model_last.pt")
    assert [f.message.split(":")[0] for f in state.trunk.failures] == ["partial"]
    assert state.trunk.failures[0].message.startswith("partial: 1 of 4 iterations")
    for k in (0, 1):  # forked from the partial trunk's last checkpoint (PPO iteration 1)
        result = read_json(store / layout.train_result_key("p", k, 0))
        assert result["metrics"]["iterations"] == 1 + 2


def test_step_commands_train_the_trunk_then_the_forked_experts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s"
    common = ["--run_name", "st", "--store", str(store)]
    assert main(["init", *common, "--config", TINY, "--set", "trunk_share=0.5"]) == 0
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    capsys.readouterr()
    assert main(["train-expert", *common, "--expert_id", "0"]) == 2  # no trunk yet
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pec train-trunk" in err
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before  # nothing written

    assert main(["train-trunk", *common]) == 0
    state = state_of(store, "st")
    assert state.trunk is not None and state.trunk.trained
    assert main(["train-trunk", *common]) == 2  # trained once: the experts fork from it
    assert "already has a trained trunk" in capsys.readouterr().err
    for k in (0, 1):
        assert main(["train-expert", *common, "--expert_id", str(k)]) == 0
        result = read_json(store / layout.train_result_key("st", k, 0))
        assert result["metrics"]["iterations"] == 3  # 2 of the trunk + 1 of its own
    assert main(["evaluate-frontier", *common]) == 0
    assert main(["refit", *common]) == 0
    state = state_of(store, "st")
    assert state.iteration == 1 and state.budgets[0].rule == "trunk"
    assert main(["train-trunk", *common]) == 2  # only at iteration 0


def test_a_corrupt_trunk_checkpoint_is_refused_before_any_expert_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s"
    common = ["--run_name", "c", "--store", str(store)]
    assert main(["init", *common, "--config", TINY, "--set", "trunk_share=0.5"]) == 0
    assert main(["train-trunk", *common]) == 0
    (store / layout.trunk_dir("c") / "model_last.pt").write_bytes(b"not a torch archive")
    capsys.readouterr()
    assert main(["run", *common]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "the trunk's checkpoint" in err and "not a readable checkpoint" in err
    assert not (store / "c" / "expert_0").exists()  # no expert's samples were written


# ---------------------------------------------------------------- budget follows wins


def test_an_expert_that_won_nothing_gives_its_budget_to_the_winner(
    tmp_path: Path, job_calls: list[tuple[str, str, int, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s"
    common = ["--run_name", "w", "--store", str(store)]
    assert main(["init", *common, "--config", TINY, "--set", "budget_rule=wins"]) == 0
    for k in (0, 1):
        assert main(["train-expert", *common, "--expert_id", str(k)]) == 0
    assert main(["frontier", *common]) == 0
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps([[3, 5, 1, 2], [1, 0, 0, 2]]))  # expert 1 wins none (2/2 tie)
    assert main(["refit", *common, "--scores", str(scores)]) == 0

    capsys.readouterr()
    assert main(["train-expert", *common, "--expert_id", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no training budget" in err

    job_calls.clear()
    assert main(["run", *common]) == 0  # the driver: iteration 1 trains expert 0 only
    assert [c for c in job_calls if c[0] == "train"] == [("train", "expert", 0, 1)]
    result = read_json(store / layout.train_result_key("w", 0, 1))
    assert result["metrics"]["env_steps"] == 4 * ROLLOUT * ENVS  # both experts' 2 iterations
    assert not (store / layout.train_result_key("w", 1, 1)).exists()
    state = state_of(store, "w")
    assert state.iteration == 2
    assert state.experts[1].last_trained_pec_iter == 0  # kept its checkpoint, still evaluated
    scores_1 = read_json(store / layout.scores_key("w", 1))
    assert scores_1["scores"][1] is not None
    budgets = [(b.iteration, b.rule, b.ppo_iterations, b.won_counts) for b in state.budgets]
    assert budgets == [(0, "equal", [2, 2], None), (1, "wins", [4, 0], [3, 0])]

    capsys.readouterr()
    assert main(["status", *common]) == 0
    out = capsys.readouterr().out
    assert "gave its budget" in out and "wins" in out


def test_proportional_budget_follows_the_share_of_wins(
    tmp_path: Path, job_calls: list[tuple[str, str, int, int]]
) -> None:
    store = tmp_path / "s"
    common = ["--run_name", "pr", "--store", str(store)]
    argv = ["--config", TINY, "--set", "budget_rule=proportional", "--set", "max_iterations=4"]
    assert main(["init", *common, *argv]) == 0
    for k in (0, 1):
        assert main(["train-expert", *common, "--expert_id", str(k)]) == 0
    assert main(["frontier", *common]) == 0
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps([[3, 5, 1, 2], [1, 0, 4, 1]]))  # wins 3 : 1
    assert main(["refit", *common, "--scores", str(scores)]) == 0
    job_calls.clear()
    assert main(["run", *common]) == 0
    trained = {c[2]: c for c in job_calls if c[0] == "train"}
    assert sorted(trained) == [0, 1]
    for k, its in ((0, 6), (1, 2)):  # 8 PPO iterations split 3 : 1
        result = read_json(store / layout.train_result_key("pr", k, 1))
        assert result["metrics"]["env_steps"] == its * ROLLOUT * ENVS
    budget = state_of(store, "pr").budgets[-1]
    assert (budget.rule, budget.ppo_iterations, budget.won_counts) == (
        "proportional",
        [6, 2],
        [3, 1],
    )


def test_equal_split_runs_write_the_state_as_before(tmp_path: Path) -> None:
    store = tmp_path / "s"
    common = ["--run_name", "e", "--store", str(store), "--config", TINY]
    assert main(["run", *common, "--set", "max_pec_iterations=1"]) == 0
    raw = read_json(store / "e" / "pec_state.json")
    assert "trunk" not in raw and "budgets" not in raw  # files of older runs keep loading
    run = open_run("e", str(store), None, {})
    state, _ = load_run_state(run)
    assert dump_state(state) == (store / "e" / "pec_state.json").read_bytes()
    assert state.trunk is None and state.budgets == []


def test_a_budget_record_must_name_every_expert(tmp_path: Path) -> None:
    store = tmp_path / "s"
    assert main(["init", "--run_name", "b", "--store", str(store), "--K", "2"]) == 0
    raw = read_json(store / "b" / "pec_state.json")
    raw["budgets"] = [{"iteration": 0, "rule": "wins", "ppo_iterations": [4]}]
    with pytest.raises(Exception, match="one per expert"):
        parse_state(json.dumps(raw).encode(), "b")
