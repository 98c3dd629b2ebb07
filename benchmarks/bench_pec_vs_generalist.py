"""PEC against one generalist at the same total env steps, on the MuJoCo backend.

One seed trains, in this process, every arm of issue "PEC that pays":

- `original`: PEC as the original runs it, every expert from scratch on 1/K of the budget;
- `fork`: PEC whose iteration 0 first trains one trunk on the whole box (`trunk_share`) and
  forks every expert from it;
- `fork_wins`: the same with `budget_rule: wins` (an expert that won no frontier candidate
  gives its PPO iterations to the winners), and `fork_share` with `budget_rule:
  proportional` (PPO iterations in proportion to the candidates won). Both share the `fork`
  run's trunk and iteration 0 (copies of that run after iteration 0: the same computation,
  not a second one);
- `student`: one policy distilled from the `fork_wins` experts (`pec distill`'s driver,
  `pec.evaluation.distill`), where this checkout has it;
- `generalist`: one policy on uniform designs over the whole box, trained in as many
  warm-started chunks as PEC has iterations, with exactly PEC's total env steps;
- `generalist_2`: a second generalist with other seeds; the per-design best of the two is the
  control for the oracle's selection effect.

Honest budgets: PEC's total counts every env step it spent: expert and trunk training (the
jobs' own `env_steps`), the frontier probes (each level-search probe counted as a whole
episode of `episode_steps` control steps, an upper bound: an episode that ends early counts
fully, in the generalist's favour) and, for the student, the distillation (its record's
`env_steps`). The generalist gets the largest PEC arm's total rounded up to whole PPO
iterations; the student is compared with the same generalist trained on for the student's
extra steps (one more chunk), scored at both budgets. Warm-ups: both sides use the same task
settings, and every job counts its warm-ups the same way (the clock `--warmup_clock` picks,
below), so the schedules are equivalent. The budget table is written into the JSON.

Everything is scored with level search on the same held-out uniform designs and on designs
around the transfer matrix's three corners (`bench_transfer_matrix.CORNERS`), so "specialists
win at home" is measured against the generalist there too. Three seeds, each as its own
one-thread process, then combined (mean of the per-seed means ± t 95% interval); the
README's main figures (the defaults, 64 envs, give the smaller run beside them):

    for s in 0 1 2; do OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python \\
        benchmarks/bench_pec_vs_generalist.py --seed $s --store /tmp/pec-bench \\
        --num_envs 128 --n_designs 80 --corner_designs 8 --distill_iterations 40 \\
        --distill_finetune 20 --json /tmp/pvg-s$s.json > /tmp/pvg-s$s.log 2>&1 & done; wait
    .venv/bin/python benchmarks/bench_pec_vs_generalist.py --aggregate /tmp/pvg-s?.json \\
        --out benchmarks/results/pec_vs_generalist.json --plot docs/figures/pec_vs_generalist.png

Warm-up clock (issue 23): `--warmup_clock policy_age|job` sets `backend_settings.task.
warmup_clock` in every arm's config (so in every expert, trunk and generalist chunk job);
left out, the setting is left out and the task settings' default applies. The JSON's
`settings.warmup_clock` records the clock the jobs used either way. A store's runs keep the
settings they were trained with: measure the other clock under another `--run_name` (or
`--store`); the benchmark refuses a stored run whose backend settings or leg range differ.

3-D (issue 22): `--leg_range LO HI` makes every arm GCR x spcf x leg length (femur = tibia =
leg, metres): `leg_range` in each config and the same range as the task's `leg_norm_range`
(as configs/obstacle_3d.yaml), so PEC's experts, frontier and final evaluation, and the
generalists' uniform samples, cover the 3-D box. The held-out designs are uniform over the
3-D box (`uniform_designs` with the run's design space, `--designs_seed`). The corners show
the leg axis: "short legs" and "long legs" at the middle of the GCR and spcf ranges, with
legs 1/14 of the leg range inside its ends (0.22 and 0.46 m for [0.20, 0.48]), and the
transfer matrix's "high GCR, stiff" corner (0.87, 0.009) at the middle leg length (0.34 m);
the designs around each are uniform within ± (0.01 GCR, 0.0005 spcf, 1/14 of the leg range
= 0.02 m). The JSON's `corners_at` holds them. The student is 2-D only (`pec distill`) and
is left out. Without `--leg_range` everything (configs, designs, seeds) is as before. One
seed as a one-thread process, sized from the 2-D run above (~32 min per seed at 128 envs,
K=2, with the student, on this 2-core VM under load) to about 20-30 minutes here: K=3 (the
box has one more axis to split), 64 envs, 100 + 50 PPO iterations, no student:

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_pec_vs_generalist.py \\
        --seed 0 --store /tmp/pec-bench-3d --run_name pvg3d --leg_range 0.20 0.48 --K 3 \\
        --num_envs 64 --n_designs 64 --corner_designs 8 --no_student \\
        --json /tmp/pvg3d-s0.json > /tmp/pvg3d-s0.log 2>&1

(`--warmup_clock job --run_name pvg3d-job --json /tmp/pvg3d-job-s0.json` for the other
clock; seeds 1 and 2 the same with `--seed`), then `--aggregate /tmp/pvg3d-s?.json --out
benchmarks/results/pec_vs_generalist_3d.json --plot docs/figures/pec_vs_generalist_3d.png`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pec.backends.ballu.settings import BalluTaskSettings
from pec.evaluation.baseline import (
    baseline_chunk_dir,
    generalist_job_id,
    step_budget,
    train_baseline,
    training_records,
)
from pec.evaluation.designs_file import Design, design_of, uniform_designs
from pec.evaluation.final_eval_driver import run_final_eval
from pec.evaluation.final_eval_jobs import final_eval_spec
from pec.iteration.driver import IterationReport, run_iteration, run_until_done, start_run
from pec.iteration.frontier import read_scores
from pec.jobs.plan import local_runner
from pec.jobs.runner import JobRunner
from pec.maths.design_space import DesignSpace
from pec.maths.protocols import search_rounds
from pec.presentation.visualize import render_all_soft
from pec.runs.config import build_config
from pec.runs.job_records import StoreSpec
from pec.runs.run import Run, load_run_state, make_run, read_run_config
from pec.runs.state import PECState, dump_state, parse_state
from pec.runs.store import Store, open_store

CORNERS = {  # as benchmarks/bench_transfer_matrix.py: [GCR, spcf] and the half-widths around it
    "low GCR, soft": (0.77, 0.002),
    "high GCR, soft": (0.87, 0.002),
    "high GCR, stiff": (0.87, 0.009),
}
HALF_WIDTH = (0.01, 0.0005)
LEG_CORNER_STEP = 1 / 14
"""3-D: the leg corners' centres lie this share of the leg range inside its ends, and their
half-width on the leg axis is the same share (leg_range [0.20, 0.48]: 0.22 and 0.46 ± 0.02 m)."""
PEC_ARMS = ("original", "fork", "fork_wins", "fork_share")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", help="store folder (default: a fresh temporary folder)")
    p.add_argument("--run_name", default="pvg", help="prefix of the runs' names")
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--pec_iterations", type=int, default=2)
    p.add_argument("--num_envs", type=int, default=64)
    p.add_argument("--iter0", type=int, default=100, help="PPO iterations at PEC iteration 0")
    p.add_argument("--iters", type=int, default=50, help="PPO iterations at later iterations")
    p.add_argument("--trunk_share", type=float, default=0.5, help="the fork arms' trunk share")
    p.add_argument("--F", type=int, default=16, help="frontier candidates per iteration")
    p.add_argument("--n_designs", type=int, default=64, help="held-out uniform designs")
    p.add_argument("--corner_designs", type=int, default=6, help="designs around each corner")
    p.add_argument("--designs_seed", type=int, default=4242)
    p.add_argument("--episode_steps", type=int, default=400, help="control steps per episode")
    p.add_argument("--warmup", type=int, default=20, help="curriculum and goal warm-up (PPO its)")
    p.add_argument("--distill_iterations", type=int, default=30, help="imitation rounds")
    p.add_argument("--distill_finetune", type=int, default=15, help="PPO fine-tune iterations")
    p.add_argument("--no_student", action="store_true", help="leave the distilled student out")
    p.add_argument(
        "--leg_range",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="3-D: GCR x spcf x leg length (metres) for every arm (default: 2-D)",
    )
    p.add_argument(
        "--warmup_clock",
        choices=("policy_age", "job"),
        help="backend_settings.task.warmup_clock of every job (default: the config's default)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS threads of every job")
    p.add_argument("--json", help="write this seed's figures here")
    p.add_argument(
        "--aggregate", nargs="+", metavar="JSON", help="only combine earlier seeds' --json files"
    )
    p.add_argument("--out", help="--aggregate: write the combined results here")
    p.add_argument("--plot", help="--aggregate: write the figure here")
    return p.parse_args(argv)


# ---------------------------------------------------------------- budgets


def probes_for(level: int, top: int) -> int:
    """Probes the level search spends on a design whose score is `level` (its bisection path
    is fixed by the answer; a 0 may mean level 0 passed or not: the longer path counts)."""

    def path(passed_up_to: int) -> int:
        passed, failed, probes = -1, top + 1, 0
        while failed - passed > 1:
            mid = (passed + failed) // 2
            if mid <= passed_up_to:
                passed = mid
            else:
                failed = mid
            probes += 1
        return probes

    count = path(level) if level > 0 else max(path(0), path(-1))
    assert count <= search_rounds(top)
    return count


def frontier_probe_steps(run: Run, state: PECState, episode_steps: int) -> float:
    """Env steps of every frontier evaluation the run made (probes x whole episodes)."""
    top = run.config.search_max_level
    total = 0
    for iteration in range(state.iteration):
        scores = read_scores(run, iteration)
        assert scores is not None, f"{run.name}: iteration {iteration} has no scores.json"
        for row in scores["scores"]:
            if row is not None:
                total += sum(probes_for(int(v), top) for v in row) * (episode_steps + 1)
    return float(total)


def pec_budget(run: Run, state: PECState, episode_steps: int) -> dict[str, float]:
    records = training_records(run, state)
    trunk = sum(r.env_steps or 0.0 for r in records if r.expert_id < 0)
    experts = sum(r.env_steps or 0.0 for r in records if r.expert_id >= 0)
    probes = frontier_probe_steps(run, state, episode_steps)
    return {
        "expert_training": experts,
        "trunk_training": trunk,
        "frontier_probes": probes,
        "distillation": 0.0,
        "total": experts + trunk + probes,
    }


# ---------------------------------------------------------------- runs


def pec_config(args: argparse.Namespace, seed: int, **extra: Any) -> Any:
    task: dict[str, Any] = {
        "episode_steps": args.episode_steps,
        "curriculum_warmup_iterations": args.warmup,
        "goal_warmup_iterations": args.warmup,
        "goal_ramp_iterations": args.warmup,
    }
    if args.warmup_clock is not None:
        task["warmup_clock"] = args.warmup_clock
    if args.leg_range is not None:  # as configs/obstacle_3d.yaml: the policy sees leg over the box
        extra = {"leg_range": list(args.leg_range), **extra}
        task["leg_norm_range"] = list(args.leg_range)
    return build_config(
        {
            "K": args.K,
            "seed": seed,
            "max_pec_iterations": args.pec_iterations,
            "coverage_target": 1.0,
            "num_envs": args.num_envs,
            "max_iterations_iter0": args.iter0,
            "max_iterations": args.iters,
            "F": args.F,
            "score": "level_search",
            "threads_per_job": args.threads,
            "backend_settings": {"task": task},
            **extra,
        }
    )


def clone_after(store_dir: Path, source: str, target: str) -> None:
    """Copy run `source` (store folder layout) to `target` with every absolute path and the run
    name rewritten: the same finished iterations, as if `target` had computed them."""
    src, dst = store_dir / source, store_dir / target
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("leases", "prefect-results"))
    old, new = f"{src}/", f"{dst}/"
    for path in dst.rglob("*.json"):
        text = path.read_text()
        if old in text:
            path.write_text(text.replace(old, new))
    state_path = dst / "pec_state.json"
    state = parse_state(state_path.read_bytes(), str(state_path))
    state_path.write_bytes(dump_state(state.model_copy(update={"run_name": target})))


def reporter(name: str) -> Callable[[IterationReport], None]:
    def report(r: IterationReport) -> None:
        cov = "-" if r.coverage is None else f"{r.coverage:.3f}"
        trunk = f", trunk {r.trunk}" if r.trunk else ""
        print(f"  {name} iteration {r.iteration}: trained {r.trained}{trunk}, coverage {cov}")

    return report


def evaluate_checkpoint(
    run: Run,
    state: PECState,
    checkpoint: str,
    designs: Sequence[Design],
    stem: str,
    runner: JobRunner,
) -> list[int]:
    """One policy (a generalist's chunk) on the designs, with the run's protocol and seed."""
    spec = final_eval_spec(
        run, state, generalist_job_id(state), checkpoint, designs, stem, 1, 0, threads=1
    )
    (outcome,) = runner.run_jobs([spec])
    result = outcome.eval_result()
    if result is None:
        raise RuntimeError(f"evaluation of {checkpoint} failed: {outcome.error}")
    return list(result.levels)


Corner = tuple[tuple[float, ...], tuple[float, ...]]
"""A corner's centre and its half-width per axis, in the space's column order."""


def corner_table(space: DesignSpace) -> dict[str, Corner]:
    """The corners the designs around them are drawn from. 2-D: the transfer matrix's three.
    3-D: two leg corners at the middle of the GCR and spcf ranges, "short legs" and "long
    legs" (`LEG_CORNER_STEP` of the leg range inside its ends: 0.22 and 0.46 m), and the
    transfer matrix's "high GCR, stiff" corner at the middle of the leg range (the one corner
    where a 2-D specialist beat the generalist in two of three seeds)."""
    if space.leg is None:
        return {name: (centre, HALF_WIDTH) for name, centre in CORNERS.items()}
    lo, hi = space.leg
    step = LEG_CORNER_STEP * (hi - lo)
    gcr, spcf = (sum(space.gcr) / 2, sum(space.spcf) / 2)
    half = (*HALF_WIDTH, step)
    return {
        "short legs": ((gcr, spcf, lo + step), half),
        "long legs": ((gcr, spcf, hi - step), half),
        "high GCR, stiff, mid legs": ((*CORNERS["high GCR, stiff"], (lo + hi) / 2), half),
    }


def corner_designs(n: int, seed: int, corners: dict[str, Corner]) -> list[Design]:
    """`n` uniform designs in the box of half-widths around each corner, one generator per
    corner (seed + its index), drawn axis by axis."""
    designs: list[Design] = []
    for c, (centre, half) in enumerate(corners.values()):
        rng = np.random.default_rng(seed + c)
        columns = [rng.uniform(x - h, x + h, n) for x, h in zip(centre, half, strict=True)]
        designs += [
            design_of(len(designs) + i, row) for i, row in enumerate(np.column_stack(columns))
        ]
    return designs


def corner_names(figures: dict[str, Any]) -> list[str]:
    """The corners of a seed's figures (results written before 3-D: the transfer matrix's)."""
    return list(figures.get("corners_at") or CORNERS)


def per_corner(levels: Sequence[int], n: int, names: Sequence[str]) -> dict[str, float]:
    return {name: float(np.mean(levels[c * n : (c + 1) * n])) for c, name in enumerate(names)}


def check_stored_configs(store: Store, runs: dict[str, Run]) -> None:
    """Refuse to go on with a stored run whose backend settings or leg range are not this
    invocation's (another --warmup_clock or --leg_range on the same --store and --run_name
    would otherwise reuse iterations trained under the other settings)."""
    for run in runs.values():
        recorded = read_run_config(store, run.name)
        if recorded is None:
            continue
        for field in ("backend_settings", "leg_range"):
            old, new = getattr(recorded, field), getattr(run.config, field)
            if old is not None and new is not None and field == "leg_range":
                old, new = list(old), list(new)
            if old != new:
                raise SystemExit(
                    f"run '{run.name}' in {store.root_uri} was trained with {field} {old}, "
                    f"this invocation asks for {new}: pass another --run_name or --store"
                )


def distill_module() -> Any | None:
    try:
        return importlib.import_module("pec.evaluation.distill")
    except ImportError:
        return None


# ---------------------------------------------------------------- one seed


def run_seed(
    args: argparse.Namespace,
    store: Store,
    store_dir: Path,
    seed: int,
    save: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """All arms of one seed, in stages that each end with a comparison `save`d (so a seed cut
    short still reports what it finished): 1. original PEC and the generalist; 2. the fork
    arms; 3. the second generalist; 4. the student and the generalist at its budget; 5. the
    corners. Everything is reused from the store when a stage is run again."""
    spec = StoreSpec(location=store.root_uri)
    names = {arm: f"{args.run_name}-s{seed}-{arm}" for arm in PEC_ARMS}
    configs = {
        "original": pec_config(args, seed),
        "fork": pec_config(args, seed, trunk_share=args.trunk_share),
        "fork_wins": pec_config(args, seed, trunk_share=args.trunk_share, budget_rule="wins"),
        "fork_share": pec_config(
            args, seed, trunk_share=args.trunk_share, budget_rule="proportional"
        ),
    }
    runs = {arm: make_run(store, spec, names[arm], configs[arm]) for arm in PEC_ARMS}
    check_stored_configs(store, runs)
    runner = local_runner(configs["original"])
    timings: dict[str, float] = {}
    states: dict[str, PECState] = {}
    budgets: dict[str, dict[str, float]] = {}
    generalists: dict[str, tuple[str, float, list[int]]] = {}
    figures: dict[str, Any] = {
        "seed": seed,
        "settings": settings_of(args),
        "heldout": {},
        "corners": {},
        "stages_done": [],
    }
    base_run = runs["original"]
    held = uniform_designs(base_run.space, args.n_designs, args.designs_seed)
    held_stem = f"heldout_{args.n_designs}_uniform"
    table = corner_table(base_run.space)
    if base_run.space.leg is not None:  # 2-D figures stay as they were (the corners are fixed)
        figures["corners_at"] = {
            name: {"centre": list(centre), "half_width": list(half)}
            for name, (centre, half) in table.items()
        }
    corners = corner_designs(args.corner_designs, args.designs_seed + 1, table)
    corner_stem = f"corners_{len(corners)}"
    print(f"seed {seed}: store {store.root_uri}", flush=True)

    def finish_arm(arm: str) -> None:
        states[arm] = load_run_state(runs[arm])[0]
        budgets[arm] = pec_budget(runs[arm], states[arm], args.episode_steps)

    def evaluate_arm(arm: str, stem: str, designs: Sequence[Design]) -> None:
        summary = run_final_eval(
            runs[arm], states[arm], designs, stem, runner, num_episodes=1, start_difficulty=0
        )
        figures["heldout" if stem == held_stem else "corners"][arm] = {
            "oracle": summary["oracle"],
            "routed": summary["routed"],
            "score_routed": summary["score_routed"],
            "expert_means": summary["expert_means"],
        }

    def evaluate_generalist(name: str, stem: str, designs: Sequence[Design]) -> None:
        levels = evaluate_checkpoint(
            base_run, states["original"], generalists[name][0], designs, stem, runner
        )
        figures["heldout" if stem == held_stem else "corners"][name] = {"levels": levels}

    def chunk_checkpoint(replica: int, chunk: int) -> str:
        key = baseline_chunk_dir(base_run.name, chunk, replica) + "result.json"
        return str(json.loads(store.read_bytes(key))["checkpoint_uri"])

    def train_generalist(name: str, replica: int, plan: list[int]) -> None:
        record = train_baseline(
            base_run, states["original"], runner, num_envs=args.num_envs, replica=replica, plan=plan
        )
        steps = sum(float((c.get("metrics") or {}).get("env_steps", 0.0)) for c in record["chunks"])
        generalists[name] = (chunk_checkpoint(replica, len(plan) - 1), steps, plan)

    def stage_done(stage: str) -> None:
        figures["stages_done"].append(stage)
        if "generalist_2" in figures["heldout"] and "generalist" in figures["heldout"]:
            both = np.asarray(
                [figures["heldout"][g]["levels"] for g in ("generalist", "generalist_2")],
                dtype=float,
            )
            figures["heldout"]["generalist_best_of_2"] = {"levels": both.max(axis=0).tolist()}
        table: dict[str, Any] = {arm: dict(b) for arm, b in budgets.items()}
        for name, (_, steps, plan) in generalists.items():
            table[name] = {"total": steps, "ppo_iterations": plan}
        figures["budget_env_steps"] = table
        figures["means"] = means_of(figures)
        figures["states"] = {
            arm: {
                "budgets": [b.model_dump(mode="json") for b in state.budgets],
                "trunk": None if state.trunk is None else state.trunk.model_dump(mode="json"),
            }
            for arm, state in states.items()
        }
        figures["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
        save(figures)
        print(f"  stage done: {stage}", flush=True)

    # 1. original PEC; the generalist gets its total (frontier probes included)
    t0 = time.time()
    run_until_done(
        runs["original"], runner, on_iteration=reporter("original"), plot=render_all_soft
    )
    finish_arm("original")
    timings["original_s"] = time.time() - t0
    rollout = step_budget(training_records(base_run, states["original"])).rollout_steps
    assert rollout, "the original run recorded no rollout length"
    per_it = args.num_envs * rollout
    g_iterations = math.ceil(budgets["original"]["total"] / per_it)
    chunks = args.pec_iterations
    plan = [g_iterations // chunks + (1 if c < g_iterations % chunks else 0) for c in range(chunks)]
    t0 = time.time()
    train_generalist("generalist", 0, plan)
    timings["generalist_s"] = time.time() - t0
    t0 = time.time()
    evaluate_arm("original", held_stem, held)
    evaluate_generalist("generalist", held_stem, held)
    timings["evaluations_1_s"] = time.time() - t0
    stage_done("original+generalist")

    # 2. fork: iteration 0 (trunk + forked experts) is shared with fork_wins (a copy)
    t0 = time.time()
    state, version, _ = start_run(runs["fork"], plot=render_all_soft)
    if state.iteration == 0:
        reporter("fork")(
            run_iteration(runs["fork"], runner, (state, version), plot=render_all_soft)
        )
        state, _ = load_run_state(runs["fork"])
    for arm in ("fork_wins", "fork_share"):
        # a copy only of iteration 0's result; an arm added later trains on its own (the same
        # seeds and config up to the budget rule, so the same iteration 0, computed again)
        if state.iteration == 1 and not (store_dir / names[arm] / "pec_state.json").exists():
            clone_after(store_dir, names["fork"], names[arm])
    run_until_done(runs["fork"], runner, on_iteration=reporter("fork"), plot=render_all_soft)
    finish_arm("fork")
    timings["fork_s"] = time.time() - t0
    t0 = time.time()
    run_until_done(
        runs["fork_wins"], runner, on_iteration=reporter("fork_wins"), plot=render_all_soft
    )
    finish_arm("fork_wins")
    timings["fork_wins_iterations_after_0_s"] = time.time() - t0
    t0 = time.time()
    run_until_done(
        runs["fork_share"], runner, on_iteration=reporter("fork_share"), plot=render_all_soft
    )
    finish_arm("fork_share")
    timings["fork_share_iterations_after_0_s"] = time.time() - t0
    for arm in ("fork", "fork_wins", "fork_share"):
        evaluate_arm(arm, held_stem, held)
    stage_done("fork arms")

    # 3. the second generalist (other seeds): the best-of-two control
    t0 = time.time()
    train_generalist("generalist_2", 1, plan)
    evaluate_generalist("generalist_2", held_stem, held)
    timings["generalist_2_s"] = time.time() - t0
    stage_done("generalist_2")

    # 4. the student (distilled from fork_wins) and the generalist trained on for its steps
    distill = None if args.no_student or base_run.space.dim != 2 else distill_module()
    if distill is not None:
        t0 = time.time()
        record = distill.distill_student(
            runs["fork_wins"],
            states["fork_wins"],
            runner,
            iterations=args.distill_iterations,
            finetune_iterations=args.distill_finetune,
            num_envs=args.num_envs,
            exclude_stem=held_stem,
        )
        timings["distill_s"] = time.time() - t0
        figures["student_record"] = {k: record.get(k) for k in ("env_steps", "plan", "label_share")}
        student_total = budgets["fork_wins"]["total"] + float(record["env_steps"])
        budgets["student"] = {
            **budgets["fork_wins"],
            "distillation": float(record["env_steps"]),
            "total": student_total,
        }
        extra = max(1, math.ceil(student_total / per_it) - g_iterations)
        t0 = time.time()
        train_generalist("generalist_at_student_budget", 0, [*plan, extra])
        payload = distill.evaluate_student(
            runs["fork_wins"],
            states["fork_wins"],
            held,
            held_stem,
            runner,
            num_episodes=1,
            start_difficulty=0,
        )
        figures["heldout"]["student"] = {"levels": list(payload["levels"])}
        evaluate_generalist("generalist_at_student_budget", held_stem, held)
        timings["student_eval_s"] = time.time() - t0
        stage_done("student")
    elif not args.no_student and base_run.space.dim != 2:
        print("  student: pec distill is 2-D only; arm left out")
    elif not args.no_student:
        print("  student: pec.evaluation.distill is not in this checkout; arm left out")

    # 5. the transfer matrix's corners, for every policy
    t0 = time.time()
    for arm in PEC_ARMS:
        evaluate_arm(arm, corner_stem, corners)
    for name in generalists:
        evaluate_generalist(name, corner_stem, corners)
    if distill is not None:
        payload = distill.evaluate_student(
            runs["fork_wins"],
            states["fork_wins"],
            corners,
            corner_stem,
            runner,
            num_episodes=1,
            start_difficulty=0,
        )
        figures["corners"]["student"] = {"levels": list(payload["levels"])}
    timings["corners_s"] = time.time() - t0
    stage_done("corners")
    print_seed(figures)
    return figures


# ---------------------------------------------------------------- figures


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        "K",
        "pec_iterations",
        "num_envs",
        "iter0",
        "iters",
        "trunk_share",
        "F",
        "n_designs",
        "corner_designs",
        "designs_seed",
        "episode_steps",
        "warmup",
        "distill_iterations",
        "distill_finetune",
    )
    settings = {k: getattr(args, k) for k in names}
    settings["leg_range"] = None if args.leg_range is None else list(args.leg_range)
    # the clock every job used: the option, else the task settings' default
    default_clock = BalluTaskSettings.model_fields["warmup_clock"].default
    settings["warmup_clock"] = args.warmup_clock or default_clock
    return settings


def means_of(figures: dict[str, Any]) -> dict[str, float]:
    """Flat per-seed means: `<arm>/<policy>` on the held-out designs, `corner/...` per corner."""
    out: dict[str, float] = {}
    n = figures["settings"]["corner_designs"] if "settings" in figures else None
    names = corner_names(figures)
    for where in ("heldout", "corners"):
        for arm, part in figures.get(where, {}).items():
            for policy, levels in part.items():
                if policy == "expert_means":
                    continue
                key = arm if policy == "levels" else f"{arm}/{policy}"
                if where == "heldout":
                    out[key] = float(np.mean(levels))
                elif n:
                    for corner, value in per_corner(levels, n, names).items():
                        out[f"corner {corner}: {key}"] = value
    return out


HEADLINE = (
    ("PEC original, oracle", "original/oracle"),
    ("PEC original, score-routed", "original/score_routed"),
    ("PEC original, nearest centre", "original/routed"),
    ("PEC fork, oracle", "fork/oracle"),
    ("PEC fork, score-routed", "fork/score_routed"),
    ("PEC fork+wins, oracle", "fork_wins/oracle"),
    ("PEC fork+wins, score-routed", "fork_wins/score_routed"),
    ("PEC fork+proportional, oracle", "fork_share/oracle"),
    ("PEC fork+proportional, score-routed", "fork_share/score_routed"),
    ("student (distilled fork+wins)", "student"),
    ("generalist", "generalist"),
    ("generalist at the student's budget", "generalist_at_student_budget"),
    ("generalist #2", "generalist_2"),
    ("best of two generalists", "generalist_best_of_2"),
)


def print_seed(figures: dict[str, Any]) -> None:
    means = figures["means"]
    g = means["generalist"]
    print(f"\nseed {figures['seed']}: mean level on the held-out designs (ratio to the generalist)")
    for label, key in HEADLINE:
        if key in means:
            print(f"  {label:40}{means[key]:8.3f}{means[key] / g if g else float('nan'):8.3f}")
    print("env steps:", json.dumps({k: v["total"] for k, v in figures["budget_env_steps"].items()}))
    print("timings:", figures["timings_s"], flush=True)


T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def ci95(values: Sequence[float]) -> float:
    """Half-width of the t 95% interval of the mean over seeds (0 for one seed)."""
    n = len(values)
    if n < 2:
        return 0.0
    return float(T_975.get(n - 1, 1.96) * np.std(values, ddof=1) / math.sqrt(n))


def goals(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals per seed: score-routed >= 1.1 x generalist and oracle >= best of two
    generalists (per PEC arm, in at least 2 of 3 seeds); student >= generalist (at its budget).
    A seed that did not reach an arm counts as not meeting its goal (None in the lists)."""

    def ratio_of(s: dict[str, Any], key: str, ref: str) -> float | None:
        m = s["means"]
        return m[key] / m[ref] if key in m and m.get(ref) else None

    out: dict[str, Any] = {}
    for arm in PEC_ARMS:
        routed = [ratio_of(s, f"{arm}/score_routed", "generalist") for s in per_seed]
        oracle = [ratio_of(s, f"{arm}/oracle", "generalist_best_of_2") for s in per_seed]
        out[arm] = {
            "score_routed_over_generalist": routed,
            "score_routed_goal_seeds": sum(1 for r in routed if r is not None and r >= 1.1),
            "oracle_over_best_of_two": oracle,
            "oracle_ge_best_of_two_seeds": sum(1 for r in oracle if r is not None and r >= 1.0),
        }
    out["student"] = {
        "over_generalist": [ratio_of(s, "student", "generalist") for s in per_seed],
        "over_generalist_at_its_budget": [
            ratio_of(s, "student", "generalist_at_student_budget") for s in per_seed
        ],
    }
    return out


def space_of(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The seeds' common design space and warm-up clock; refuses seeds that differ (a seed
    written before either setting existed is 2-D and its clock unrecorded, None)."""
    seen = {
        (
            json.dumps(s.get("settings", {}).get("leg_range")),
            s.get("settings", {}).get("warmup_clock"),
        )
        for s in per_seed
    }
    legs = {leg for leg, _ in seen}
    clocks = {clock for _, clock in seen if clock is not None}
    if len(legs) > 1 or len(clocks) > 1:
        raise SystemExit(
            f"the seeds differ in leg_range {sorted(legs)} or warmup_clock {sorted(clocks)}; "
            "aggregate each setting on its own"
        )
    clock = clocks.pop() if clocks and all(c is not None for _, c in seen) else None
    return {"leg_range": json.loads(legs.pop()), "warmup_clock": clock}


def aggregate(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    space = space_of(per_seed)
    keys = sorted(set.intersection(*(set(s["means"]) for s in per_seed)))
    table = {
        key: {
            "mean": float(np.mean([s["means"][key] for s in per_seed])),
            "ci95": ci95([s["means"][key] for s in per_seed]),
            "values": [s["means"][key] for s in per_seed],
        }
        for key in keys
    }
    arms = set.intersection(*(set(s.get("budget_env_steps", {})) for s in per_seed))
    budgets = {
        arm: float(np.mean([s["budget_env_steps"][arm]["total"] for s in per_seed]))
        for arm in sorted(arms)
    }
    out: dict[str, Any] = {
        "seeds": [s["seed"] for s in per_seed],
        "means": table,
        "budget_env_steps": budgets,
    }
    if space["leg_range"] is not None or space["warmup_clock"] is not None:
        out["settings"] = space  # 2-D results written before either setting stay as they were
    return out


def plot(agg: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(label, agg["means"][key]) for label, key in HEADLINE if key in agg["means"]]
    figure, ax = plt.subplots(figsize=(9, 4.2))
    colors = [
        "#2ca02c"
        if "oracle" in label
        else "#8c564b"
        if "PEC" in label
        else "#1f77b4"
        if label.startswith("student")
        else "#7f7f7f"
        for label, _ in shown
    ]
    x = np.arange(len(shown))
    ax.bar(
        x,
        [v["mean"] for _, v in shown],
        yerr=[v["ci95"] for _, v in shown],
        capsize=3,
        color=colors,
    )
    for i, (_, v) in enumerate(shown):
        ax.plot([i] * len(v["values"]), v["values"], "k.", markersize=4)
    g = agg["means"]["generalist"]["mean"]
    ax.axhline(g, color="#7f7f7f", linestyle=":", linewidth=1)
    ax.axhline(1.1 * g, color="#d62728", linestyle=":", linewidth=1, label="1.1 x generalist")
    ax.set_xticks(x, [label for label, _ in shown], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mean level passed (held-out designs)")
    settings = agg.get("settings") or {}
    where = ""
    if settings.get("leg_range") is not None:
        where += ", GCR × spcf × leg {}".format(settings["leg_range"])
    if settings.get("warmup_clock") is not None:
        where += f", warm-ups by {settings['warmup_clock']}"
    ax.set_title(
        f"PEC arms vs generalist at equal env steps{where}, {len(agg['seeds'])} seeds "
        "(mean ± t 95%, dots: seeds)",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def print_aggregate(agg: dict[str, Any], goal: dict[str, Any]) -> None:
    print(f"over seeds {agg['seeds']} (mean of per-seed means ± t 95% interval):")
    for label, key in HEADLINE:
        if key in agg["means"]:
            v = agg["means"][key]
            values = ", ".join(f"{x:.2f}" for x in v["values"])
            print(f"  {label:40}{v['mean']:7.2f} ± {v['ci95']:.2f}   [{values}]")
    corners = sorted(
        k for k in agg["means"] if k.startswith("corner ") and not k.endswith("routed")
    )
    if corners:
        print("corners (designs around each; PEC's oracles and the single policies):")
        for key in corners:
            v = agg["means"][key]
            print(f"  {key:60}{v['mean']:7.2f} ± {v['ci95']:.2f}")
    print("goals:", json.dumps(goal, indent=1))


def portable(value: Any) -> Any:
    """The figures without this machine's paths: an absolute path keeps its last three parts
    (run, folder, file); in a command the store is STORE and a file path its name."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str) and value.startswith("benchmarks/"):
        words = shlex.split(value)
        for i, word in enumerate(words[:-1]):
            if word == "--store":
                words[i + 1] = "STORE"
        return shlex.join(Path(w).name if w.startswith("/") else w for w in words)
    if isinstance(value, str) and value.startswith("/"):
        return ".../" + "/".join(Path(value).parts[-3:])
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    if args.aggregate:
        per_seed = [json.loads(Path(p).read_text()) for p in args.aggregate]
        per_seed = [s for doc in per_seed for s in doc.get("per_seed", [doc])]
        agg = aggregate(per_seed)
        goal = goals(per_seed)
        print_aggregate(agg, goal)
        if args.plot:
            plot(agg, args.plot)
        if args.out:
            commands = [s.get("command") for s in per_seed]
            document = {
                "command_per_seed": commands,
                "command_aggregate": shlex.join(
                    ["benchmarks/bench_pec_vs_generalist.py", *(argv or sys.argv[1:])]
                ),
                "aggregate": agg,
                "goals": goal,
                "per_seed": per_seed,
            }
            Path(args.out).write_text(json.dumps(portable(document), indent=1) + "\n")
        return 0
    store_dir = Path(args.store or tempfile.mkdtemp(prefix="pec-bench-"))
    store_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(str(store_dir))
    command = shlex.join(["benchmarks/bench_pec_vs_generalist.py", *(argv or sys.argv[1:])])

    def save(figures: dict[str, Any]) -> None:
        if args.json:
            Path(args.json).write_text(json.dumps({**figures, "command": command}, indent=1))

    run_seed(args, store, store_dir.resolve(), args.seed, save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
