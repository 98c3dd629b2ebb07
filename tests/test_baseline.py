"""The generalist: PEC's step budget from its records, the chunk plan, training and evaluation.

A fake executor stands in for the job layer: it writes checkpoints where `run_train_job`
would (the PEC layout of the pseudo-expert K) and reports env_steps = its × envs × rollout.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from pec.errors import InputError, StateError
from pec.evaluation.baseline import (
    baseline_chunk_dir,
    baseline_eval_key,
    baseline_record_key,
    evaluate_baseline,
    plan_chunks,
    step_budget,
    train_baseline,
    training_records,
)
from pec.evaluation.designs_file import Design
from pec.evaluation.final_eval_jobs import eval_seed
from pec.iteration.run_setup import initialise_run
from pec.jobs.external import LogSink
from pec.jobs.runner import LocalJobRunner
from pec.jobs.spec import EvalJobResult, EvalJobSpec, TrainJobSpec
from pec.runs import layout
from pec.runs.config import build_config
from pec.runs.job_records import StoreSpec, TrainJobResult
from pec.runs.run import Run, make_run
from pec.runs.state import PECState
from pec.runs.state_io import load_state, save_state
from pec.runs.store import LocalStore

RUN = "base"
ROLLOUT = 5


class FakeExecutor:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.train_specs: list[TrainJobSpec] = []
        self.eval_specs: list[EvalJobSpec] = []

    def execute(
        self, spec: TrainJobSpec | EvalJobSpec, log: LogSink | None = None
    ) -> TrainJobResult | EvalJobResult:
        store = self.run.store
        if isinstance(spec, EvalJobSpec):
            self.eval_specs.append(spec)
            return EvalJobResult(levels=[int(g * 10) for g, _ in spec.designs], expert_id=0)
        self.train_specs.append(spec)
        best = layout.best_checkpoint_key(spec.run_name, spec.expert_id, spec.iteration)
        last = layout.last_checkpoint_key(spec.run_name, spec.expert_id, spec.iteration)
        store.write_bytes(best, f"best {spec.iteration}".encode())
        store.write_bytes(last, f"last {spec.iteration}".encode())
        store.write_bytes(
            layout.train_log_prefix(spec.run_name, spec.expert_id, spec.iteration)
            + "events.out.tfevents.1",
            b"tb",
        )
        steps = spec.max_iterations * spec.num_envs * ROLLOUT
        return TrainJobResult(
            checkpoint_uri=store.uri(best),
            last_checkpoint_uri=store.uri(last),
            metrics={"env_steps": float(steps), "mean_level": 6.0, "iterations": 1.0},
            log_uri=store.uri("x"),
        )


def npy(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values)
    return buffer.getvalue()


def pec_run(tmp_path: Path) -> tuple[Run, PECState]:
    """K=2, iteration 2 done by both experts; iteration 2 trained by expert 0 but not committed."""
    store = LocalStore(tmp_path / "store")
    config = build_config({"K": 2, "N_init": 3, "num_envs": 4, "dl_buffer": 2, "seed": 5})
    run = make_run(store, StoreSpec(location=store.root_uri), RUN, config)
    state, version, _ = initialise_run(run)
    # (expert, iteration, env_steps, PPO iterations reported)
    records = [
        (0, 0, 400.0, 20.0),
        (1, 0, 400.0, 20.0),
        (0, 1, 200.0, 30.0),
        (1, 1, 200.0, 30.0),
        (0, 2, 999.0, 40.0),
    ]
    for k, it, steps, its in records:
        store.write_bytes(
            layout.train_result_key(RUN, k, it),
            json.dumps(
                {
                    "checkpoint_uri": "x",
                    "metrics": {"env_steps": steps, "iterations": its},
                    "log_uri": "x",
                }
            ).encode(),
        )
        store.write_bytes(layout.samples_keys(RUN, k, it)[0], npy(np.zeros(4, np.float32)))
    # a result without env_steps (a recovered crash) and the baseline's scratch folder
    store.write_bytes(layout.train_result_key(RUN, 1, 2), b'{"metrics": {}}')
    store.write_bytes(layout.train_result_key(RUN, 2, 9), b'{"metrics": {"env_steps": 5}}')
    experts = []
    for e in state.experts:
        key = layout.best_checkpoint_key(RUN, e.id, 1)
        store.write_bytes(key, b"ckpt")
        experts.append(
            e.model_copy(
                update={
                    "checkpoint": store.uri(key),
                    "trained": True,
                    "last_trained_pec_iter": 1 if e.id == 0 else 2,
                }
            )
        )
    save_state(
        store,
        state.model_copy(update={"experts": experts, "iteration": 2}),
        expected_version=version,
        previous=state,
    )
    loaded = load_state(store, RUN)
    assert loaded is not None
    return run, loaded[0]


def test_budget_counts_only_committed_trainings_of_real_experts(tmp_path: Path) -> None:
    run, state = pec_run(tmp_path)
    records = training_records(run, state)
    # expert 0 committed up to iteration 1 (its iteration-2 training is excluded), expert 1
    # up to 2; the pseudo-expert 2 (baseline scratch) never counts
    assert [(r.expert_id, r.iteration) for r in records] == [(0, 0), (1, 0), (0, 1), (1, 1), (1, 2)]
    budget = step_budget(records)
    assert budget.env_steps == 400 + 400 + 200 + 200
    assert budget.missing == [(1, 2)]
    # iteration 0: 400 env steps / (20 PPO iterations × 4 envs) = 5 steps per env per iteration
    assert budget.rollout_steps == 5


def test_plan_gives_at_least_the_budget_split_over_chunks() -> None:
    # 1200 steps / (4 envs × 5) = 60 PPO iterations
    assert plan_chunks(1200, 4, 5, 1) == [60]
    assert plan_chunks(1200, 4, 5, 4) == [15, 15, 15, 15]
    # 1201 -> ceil -> 61 iterations, the remainder goes to the first chunk
    assert plan_chunks(1201, 4, 5, 2) == [31, 30]
    assert plan_chunks(10, 64, 20, 3) == [1, 1, 1]
    with pytest.raises(StateError, match="no recorded training env steps"):
        plan_chunks(0, 4, 5, 1)
    with pytest.raises(InputError, match="must be >= 1"):
        plan_chunks(100, 0, 5, 1)


def test_train_baseline_matches_the_budget_and_moves_files_under_baseline(tmp_path: Path) -> None:
    run, state = pec_run(tmp_path)
    executor = FakeExecutor(run)
    record = train_baseline(run, state, LocalJobRunner(executor), chunks=2)
    assert record["plan"] == [30, 30]
    assert record["baseline_env_steps"] == 1200 == record["pec_budget"]["env_steps"]
    first, second = executor.train_specs
    assert (first.expert_id, first.iteration, first.num_envs) == (2, 0, 4)
    assert first.resume_checkpoint_uri is None and first.start_level == 0
    # chunk 1 warm-starts from chunk 0's best and starts at floor(6.0) - dl_buffer = 4
    assert second.resume_checkpoint_uri == run.store.uri(
        baseline_chunk_dir(RUN, 0) + "model_best.pt"
    )
    assert second.start_level == 4
    gcr = np.load(io.BytesIO(run.store.read_bytes(first.samples_gcr_key)))
    assert gcr.shape == (4,) and gcr.dtype == np.float32
    assert np.all((gcr >= 0.75) & (gcr <= 0.89))
    assert first.samples_gcr_key.startswith(f"{RUN}/baseline/")
    for chunk in (0, 1):  # the job's scratch folders are emptied
        assert run.store.list(layout.checkpoint_dir(RUN, 2, chunk)) == []
    moved = run.store.list(baseline_chunk_dir(RUN, 1))
    assert moved == [
        baseline_chunk_dir(RUN, 1) + n
        for n in ("model_best.pt", "model_last.pt", "result.json", "tb/events.out.tfevents.1")
    ]
    assert run.store.read_bytes(baseline_chunk_dir(RUN, 1) + "model_best.pt") == b"best 1"
    assert record["checkpoint"] == run.store.uri(baseline_chunk_dir(RUN, 1) + "model_best.pt")
    assert json.loads(run.store.read_bytes(baseline_record_key(RUN)))["plan"] == [30, 30]
    # finished chunks are reused
    again = FakeExecutor(run)
    train_baseline(run, state, LocalJobRunner(again), chunks=2)
    assert again.train_specs == []


def test_max_iterations_overrides_the_budget(tmp_path: Path) -> None:
    run, state = pec_run(tmp_path)
    executor = FakeExecutor(run)
    record = train_baseline(run, state, LocalJobRunner(executor), chunks=3, max_iterations=7)
    assert record["plan"] == [3, 2, 2]
    assert record["budget_source"] == "max_iterations"
    with pytest.raises(InputError, match="must be >= --chunks"):
        train_baseline(run, state, LocalJobRunner(executor), chunks=3, max_iterations=2)


def test_an_explicit_plan_sets_every_chunk(tmp_path: Path) -> None:
    run, state = pec_run(tmp_path)
    executor = FakeExecutor(run)
    record = train_baseline(run, state, LocalJobRunner(executor), plan=[5, 4, 1])
    assert record["plan"] == [5, 4, 1] and record["budget_source"] == "plan"
    assert [spec.max_iterations for spec in executor.train_specs] == [5, 4, 1]
    for bad in ([], [3, 0]):
        with pytest.raises(InputError, match="plan"):
            train_baseline(run, state, LocalJobRunner(executor), plan=bad)


def test_baseline_eval_uses_the_experts_protocol_and_seed(tmp_path: Path) -> None:
    run, state = pec_run(tmp_path)
    designs = [Design(id=1, GCR=0.8, spcf=0.002), Design(id=2, GCR=0.86, spcf=0.009)]
    with pytest.raises(StateError, match="no trained baseline"):
        evaluate_baseline(
            run,
            state,
            designs,
            "held",
            LocalJobRunner(FakeExecutor(run)),
            num_episodes=3,
            start_difficulty=1,
        )
    executor = FakeExecutor(run)
    train_baseline(run, state, LocalJobRunner(executor))
    payload = evaluate_baseline(
        run, state, designs, "held", LocalJobRunner(executor), num_episodes=3, start_difficulty=1
    )
    assert payload["levels"] == [8, 8]
    spec = executor.eval_specs[0]
    assert spec.seed == eval_seed(run, "held")
    assert (spec.num_episodes, spec.start_difficulty) == (3, 1)
    assert json.loads(run.store.read_bytes(baseline_eval_key(RUN, "held")))["mean"] == 8.0
    evaluate_baseline(
        run, state, designs, "held", LocalJobRunner(executor), num_episodes=3, start_difficulty=1
    )
    assert len(executor.eval_specs) == 1  # reused


def test_replicas_train_with_other_seeds_in_their_own_folder(tmp_path: Path) -> None:
    run, state = pec_run(tmp_path)
    executor = FakeExecutor(run)
    first = train_baseline(run, state, LocalJobRunner(executor))
    second = train_baseline(run, state, LocalJobRunner(executor), replica=1)
    a, b = executor.train_specs
    assert a.seed != b.seed and a.samples_gcr_key != b.samples_gcr_key
    assert b.samples_gcr_key.startswith(f"{RUN}/baseline/replica_1/")
    assert second["checkpoint"] == run.store.uri(
        baseline_chunk_dir(RUN, 0, replica=1) + "model_best.pt"
    )
    assert first["checkpoint"] != second["checkpoint"]
    assert second["plan"] == first["plan"] == [60]
    with pytest.raises(InputError, match="replica -1"):
        baseline_chunk_dir(RUN, 0, replica=-1)
