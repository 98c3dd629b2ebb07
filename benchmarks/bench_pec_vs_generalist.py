"""PEC against one generalist with the same training env-step budget, on the MuJoCo backend.

Runs a small PEC run in this process (`pec.iteration.driver.run_until_done`), trains the generalist
with the env steps the PEC run recorded, evaluates the K experts and the generalist on the
same held-out uniform designs with the same protocol and seed, and prints PEC oracle, PEC
routed (nearest centre and score-informed) and generalist means side by side. The defaults
are the README's figures: K=2, 2 PEC iterations of 200 + 100 PPO iterations x 128 envs
(1,536,000 env steps per side), level-search scores on 200 held-out uniform designs, two
generalists (the second is the best-of-K control). One seed takes about 25 minutes on one
CPU core; the README's three seeds ran as three processes, then were combined:

    for s in 0 1 2; do .venv/bin/python benchmarks/bench_pec_vs_generalist.py --seed $s \
        --run_name bench-s$s --store /tmp/pec-bench --json s$s.json & done; wait
    .venv/bin/python benchmarks/bench_pec_vs_generalist.py --aggregate s0.json s1.json s2.json \
        --plot docs/figures/pec_vs_generalist.png

The task settings shorten the warm-ups (`--warmup`; their defaults assume thousands of PPO
iterations) so that a short run can move the curriculum at all.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pec.evaluation.baseline import evaluate_baseline, train_baseline
from pec.evaluation.designs_file import uniform_designs
from pec.evaluation.final_eval import compare_scores, ratio
from pec.evaluation.final_eval_driver import run_final_eval
from pec.evaluation.report import write_report
from pec.iteration.driver import IterationReport, run_until_done
from pec.jobs.plan import local_runner
from pec.runs.config import build_config
from pec.runs.job_records import StoreSpec
from pec.runs.run import make_run
from pec.runs.store import Store, open_store


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", help="store folder (default: a fresh temporary folder)")
    p.add_argument("--run_name", default="bench-pec")
    p.add_argument("--K", type=int, default=2)
    p.add_argument("--pec_iterations", type=int, default=2)
    p.add_argument("--num_envs", type=int, default=128)
    p.add_argument("--iter0", type=int, default=200, help="PPO iterations at PEC iteration 0")
    p.add_argument("--iters", type=int, default=100, help="PPO iterations at later iterations")
    p.add_argument("--F", type=int, default=16, help="frontier candidates per iteration")
    p.add_argument("--frontier_episodes", type=int, default=3)
    p.add_argument("--n_designs", type=int, default=200, help="held-out uniform designs")
    p.add_argument("--designs_seed", type=int, default=4242)
    p.add_argument("--num_episodes", type=int, default=4, help="final-evaluation episodes")
    p.add_argument("--start_difficulty", type=int, default=0)
    p.add_argument("--episode_steps", type=int, default=400, help="control steps per episode")
    p.add_argument("--warmup", type=int, default=20, help="curriculum and goal warm-up (PPO its)")
    p.add_argument("--chunks", type=int, default=0, help="generalist chunks (0: = pec_iterations)")
    p.add_argument(
        "--generalists",
        type=int,
        default=2,
        help="generalists with other seeds; their per-design best-of-K is a control for the "
        "oracle's selection effect (1 = no control)",
    )
    p.add_argument(
        "--score",
        choices=["level_search", "final_level"],
        default="level_search",
        help="evaluation protocol of the frontier and the final evaluation (pec.maths.protocols)",
    )
    p.add_argument("--plot", help="write a bar chart (mean ± 95%% interval over seeds) here")
    p.add_argument("--seed", type=int, default=0, help="first run seed")
    p.add_argument("--seeds", type=int, default=1, help="repeat everything for this many seeds")
    p.add_argument(
        "--threads", type=int, default=1, help="torch/BLAS threads of every job (threads_per_job)"
    )
    p.add_argument("--json", help="also write the figures as JSON here")
    p.add_argument(
        "--aggregate",
        nargs="+",
        metavar="JSON",
        help="only aggregate the per-seed figures of earlier runs (their --json files)",
    )
    return p.parse_args(argv)


def run_once(args: argparse.Namespace, store: Store, run_name: str, seed: int) -> dict[str, Any]:
    """One PEC run and its generalists on one seed; prints the table and returns the figures."""
    task = {
        "episode_steps": args.episode_steps,
        "curriculum_warmup_iterations": args.warmup,
        "goal_warmup_iterations": args.warmup,
        "goal_ramp_iterations": args.warmup,
    }
    config = build_config(
        {
            "K": args.K,
            "seed": seed,
            "max_pec_iterations": args.pec_iterations,
            "coverage_target": 1.0,
            "num_envs": args.num_envs,
            "max_iterations_iter0": args.iter0,
            "max_iterations": args.iters,
            "F": args.F,
            "num_episodes": args.frontier_episodes,
            "start_difficulty": args.start_difficulty,
            "score": args.score,
            "threads_per_job": args.threads,  # else the thread policy sizes jobs to all cores
            "backend_settings": {"task": task},
        }
    )
    run = make_run(store, StoreSpec(location=store.root_uri), run_name, config)
    runner = local_runner(run.config)
    timings: dict[str, float] = {}

    def report(r: IterationReport) -> None:
        cov = "-" if r.coverage is None else f"{r.coverage:.3f}"
        print(f"  PEC iteration {r.iteration}: trained {r.trained}, coverage {cov}", flush=True)

    print(f"run {run_name} (seed {seed})", flush=True)
    t0 = time.time()
    state = run_until_done(run, runner, on_iteration=report)
    timings["pec_train_s"] = time.time() - t0

    t0 = time.time()
    records = [
        train_baseline(
            run,
            state,
            runner,
            chunks=args.chunks or args.pec_iterations,
            num_envs=args.num_envs,
            replica=r,
        )
        for r in range(args.generalists)
    ]
    record = records[0]
    timings["baseline_train_s"] = time.time() - t0
    print(
        f"  generalist: {record['plan']} PPO iterations, {record['baseline_env_steps']:.0f} env steps "
        f"(PEC {record['pec_budget']['env_steps']:.0f})",
        flush=True,
    )

    designs = uniform_designs(run.space, args.n_designs, args.designs_seed)
    stem = f"heldout_{args.n_designs}_uniform"
    t0 = time.time()
    summary = run_final_eval(
        run,
        state,
        designs,
        stem,
        runner,
        num_episodes=args.num_episodes,
        start_difficulty=args.start_difficulty,
    )
    baselines = [
        evaluate_baseline(
            run,
            state,
            designs,
            stem,
            runner,
            num_episodes=args.num_episodes,
            start_difficulty=args.start_difficulty,
            replica=r,
        )
        for r in range(args.generalists)
    ]
    baseline = baselines[0]
    timings["final_eval_s"] = time.time() - t0
    # The oracle is a per-design max over K policies; the same max over K independently seeded
    # generalists shows how much of its lead is selection alone (no specialisation).
    levels = np.asarray([b["levels"] for b in baselines], dtype=float)
    best_of = min(args.K, args.generalists)
    control = float(np.mean(levels[:best_of].max(axis=0))) if best_of > 1 else None
    keys = write_report(store, run.name, stem)

    generalist = float(baseline["mean"])
    oracle, routed = float(summary["oracle_mean"]), float(summary["routed_mean"])
    score_routed = float(summary["score_routed_mean"])
    vs_oracle = compare_scores(summary["oracle"], baseline["levels"], summary["oracle_expert"])
    vs_routed = compare_scores(summary["routed"], baseline["levels"], summary["routed_expert"])
    figures: dict[str, Any] = {
        "designs": args.n_designs,
        "K": args.K,
        "seed": seed,
        "pec_iterations": state.iteration,
        "pec_env_steps": record["pec_budget"]["env_steps"],
        "generalist_env_steps": record["baseline_env_steps"],
        "pec_oracle_mean": oracle,
        "pec_routed_mean": routed,
        "pec_score_routed_mean": score_routed,
        "generalist_mean": generalist,
        "generalist_replica_means": [float(b["mean"]) for b in baselines],
        "generalist_best_of_k_mean": control,
        "oracle_over_generalist_best_of_k": None if control is None else ratio(oracle, control),
        "oracle_over_generalist": ratio(oracle, generalist),
        "routed_over_generalist": ratio(routed, generalist),
        "expert_means": summary["expert_means"],
        "routed_hits": summary["routed_hits"],
        "oracle_wins_ties_losses": [vs_oracle.wins, vs_oracle.ties, vs_oracle.losses],
        "routed_wins_ties_losses": [vs_routed.wins, vs_routed.ties, vs_routed.losses],
        "protocol": {
            **dict(summary["protocol"]),
            "episode_steps": args.episode_steps,
        },
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"  # n/a: the denominator is 0

    print()
    print(f"{'':24}{'mean level':>12}{'/ generalist':>16}")
    print(f"{'PEC oracle':24}{oracle:12.3f}{fmt(figures['oracle_over_generalist']):>16}")
    print(f"{'PEC routed':24}{routed:12.3f}{fmt(figures['routed_over_generalist']):>16}")
    print(f"{'PEC score-routed':24}{score_routed:12.3f}{fmt(ratio(score_routed, generalist)):>16}")
    print(f"{'generalist':24}{generalist:12.3f}{'1.000':>16}")
    for r, b in enumerate(baselines[1:], start=1):
        mean = float(b["mean"])
        print(f"{f'generalist seed #{r}':24}{mean:12.3f}{fmt(ratio(mean, generalist)):>16}")
    if control is not None:
        name = f"generalist best-of-{best_of}"
        print(f"{name:24}{control:12.3f}{fmt(ratio(control, generalist)):>16}")
        print(
            f"PEC oracle / generalist best-of-{best_of} (selection-matched): "
            f"{fmt(figures['oracle_over_generalist_best_of_k'])}"
        )
    protocol = (
        f"level search up to level {summary['protocol'].get('search_max_level')}"
        if args.score == "level_search"
        else f"{args.num_episodes} episodes from level {args.start_difficulty}"
    )
    print(
        f"env steps: PEC {figures['pec_env_steps']:.0f}, generalist "
        f"{figures['generalist_env_steps']:.0f}; designs {args.n_designs}, {protocol}"
    )
    print(
        f"per-expert means: {summary['expert_means']}; routed = oracle on "
        f"{summary['routed_hits']}/{args.n_designs} designs"
    )
    print(
        f"oracle vs generalist W/T/L {vs_oracle.wins}/{vs_oracle.ties}/{vs_oracle.losses}; "
        f"routed vs generalist W/T/L {vs_routed.wins}/{vs_routed.ties}/{vs_routed.losses}"
    )
    target = figures["oracle_over_generalist"]
    verdict = "met" if target is not None and target >= 1.2 else "NOT met"
    print(f"target PEC oracle >= 1.2 x generalist: {verdict}")
    print(f"timings: {figures['timings_s']}")
    print(f"report: {store.uri(keys['markdown'])}", flush=True)
    return figures


AGGREGATED = (
    ("PEC oracle", "pec_oracle_mean"),
    ("PEC routed (nearest centre)", "pec_routed_mean"),
    ("PEC routed (score-informed)", "pec_score_routed_mean"),
    ("generalist #0", "generalist_mean"),
    ("all generalists", "generalists_mean"),
    ("generalist best-of-K", "generalist_best_of_k_mean"),
)


# Student's t 97.5% quantiles by degrees of freedom (seeds - 1); 1.96 beyond the table.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def ci95_over_seeds(values: list[float]) -> float:
    """Half-width of the t 95% interval of the mean over seeds (0 for a single seed)."""
    n = len(values)
    if n < 2:
        return 0.0
    return float(T_975.get(n - 1, 1.96) * np.std(values, ddof=1) / np.sqrt(n))


def plot_aggregate(agg: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(label, agg[key]) for label, key in AGGREGATED if key in agg]
    figure, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(
        range(len(shown)),
        [v["mean"] for _, v in shown],
        yerr=[v["ci95"] for _, v in shown],
        capsize=4,
        color=["#2ca02c", "#9467bd", "#8c564b", "#7f7f7f", "#7f7f7f", "#bcbd22"][: len(shown)],
    )
    ax.set_xticks(range(len(shown)), [label for label, _ in shown], rotation=20, ha="right")
    ax.set_ylabel("mean level (200 held-out designs)")
    ax.set_title(f"PEC vs generalist, {agg['seeds']} seeds, mean ± 95% interval")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread over seeds; ratios are of the means (a ratio of noisy means is biased)."""
    for f in per_seed:
        f["generalists_mean"] = float(np.mean(f["generalist_replica_means"]))
    result: dict[str, Any] = {"seeds": len(per_seed)}
    for _, key in AGGREGATED:
        values = [f[key] for f in per_seed if f.get(key) is not None]
        if values:
            result[key] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values)),
                "ci95": ci95_over_seeds(values),
                "values": values,
            }
    base = result["generalists_mean"]["mean"]
    result["oracle_over_all_generalists"] = ratio(result["pec_oracle_mean"]["mean"], base)
    result["routed_over_all_generalists"] = ratio(result["pec_routed_mean"]["mean"], base)
    return result


def print_aggregate(args: argparse.Namespace, agg: dict[str, Any], seeds: list[int]) -> None:
    print(f"over {len(seeds)} seeds {seeds} (mean of the per-seed means ± t 95% interval):")
    for label, key in AGGREGATED:
        if key in agg:
            values = ", ".join(f"{v:.3f}" for v in agg[key]["values"])
            print(
                f"  {label:30}{agg[key]['mean']:7.3f} ± {agg[key]['ci95']:.3f} (95%)"
                f"  std {agg[key]['std']:.3f}   [{values}]"
            )
    for label, key in (
        ("PEC oracle", "oracle_over_all_generalists"),
        ("PEC routed", "routed_over_all_generalists"),
    ):
        value = agg[key]
        shown = "n/a" if value is None else f"{value:.3f}"
        print(f"  {label} / mean of all generalists: {shown}")
    if args.plot:
        plot_aggregate(agg, args.plot)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    if args.aggregate:
        per_seed = [
            f for path in args.aggregate for f in json.loads(Path(path).read_text())["per_seed"]
        ]
        print_aggregate(
            args, aggregate(per_seed), [int(f.get("seed", i)) for i, f in enumerate(per_seed)]
        )
        return 0
    store_dir = Path(args.store or tempfile.mkdtemp(prefix="pec-bench-"))
    store_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(str(store_dir))
    print(f"store: {store.root_uri}", flush=True)
    seeds = [args.seed + i for i in range(args.seeds)]
    per_seed = []
    for seed in seeds:
        name = args.run_name if len(seeds) == 1 else f"{args.run_name}-s{seed}"
        per_seed.append(run_once(args, store, name, seed))
        print(flush=True)
    output: dict[str, Any] = {"per_seed": per_seed}
    if len(seeds) > 1:
        agg = aggregate(per_seed)
        output["aggregate"] = agg
        print_aggregate(args, agg, seeds)
    if args.json:
        Path(args.json).write_text(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
