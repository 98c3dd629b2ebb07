"""The run's sub-commands: init, train-expert, frontier, evaluate-frontier, refit, visualize,
route, status and run (one per step of the reference sheet's script table).

Every mutating command validates all of its input before it writes anything and records the
effective config in the run. The steps themselves are those of `pec.iteration` (run_setup,
training, trunk, frontier, refit, coverage) and `pec.iteration.driver`, the same functions the
`pec` flow runs.

Modules that import matplotlib or torch (pec.iteration.driver, pec.presentation.visualize) are imported inside the
commands that need them, so that `pec --help`, `pec status` or a bad flag answer at once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from pec.errors import ConflictError, InputError, StateError
from pec.evaluation.designs_file import read_designs_file
from pec.evaluation.evidence import route_designs, run_evidence
from pec.iteration.coverage import latest_coverage
from pec.iteration.frontier import (
    frontier_candidates,
    read_candidates,
    read_scores,
    score_matrix,
    write_scores,
)
from pec.iteration.job_inputs import checkpoint_exists
from pec.iteration.refit import refit_iteration
from pec.iteration.run_setup import check_warm_start, initialise_run
from pec.iteration.training import prepare_training, trainable
from pec.iteration.trunk import trunk_plan
from pec.jobs.external import LogSink
from pec.jobs.plan import local_runner
from pec.jobs.run import prefix_uri
from pec.maths.frontier import CandidateSelection
from pec.maths.score_routing import ROUTERS
from pec.presentation.cli.common import add_common, centers, open_run_from_args, pair
from pec.presentation.cli.history import status_history_table
from pec.presentation.console import PROGRESS_LINE, console, progress_bar
from pec.runs import layout
from pec.runs.checkpoints import check_expert_checkpoints
from pec.runs.run import (
    load_run_state,
    load_state_or_fail,
    open_run_store,
    state_space,
    write_effective_config,
)
from pec.runs.state import PECState

# ---------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace) -> int:
    from pec.presentation.visualize import render_all_soft

    run = open_run_from_args(
        args,
        ["K", "GCR_range", "spcf_range", "leg_range", "sigma_scale", "centers", "usd_rel_path"],
    )
    state, _, created = initialise_run(run)
    write_effective_config(run)
    plots = render_all_soft(run.store, state, None, run.config.coverage_target)
    verb = "initialised" if created else "already initialised (left unchanged)"
    console.print(
        f"run [bold]{run.name}[/] {verb}: K={len(state.experts)}, "
        f"initial coverage {state.init_realized_coverage:.3f}"
    )
    console.print(f"state: {run.store.uri(layout.state_key(run.name))}")
    for key in plots:
        console.print(f"plot:  {run.store.uri(key)}")
    return 0


def cmd_train_expert(args: argparse.Namespace) -> int:
    from pec.iteration.driver import commit_training, train_experts

    run = open_run_from_args(args, ["max_iterations", "num_envs"])
    state, version = load_run_state(run)
    k = args.expert_id
    if not 0 <= k < len(state.experts):
        raise InputError(f"--expert_id {k}: the run has experts 0..{len(state.experts) - 1}")
    if args.dl is not None and not 0 <= args.dl <= 74:
        raise InputError(f"--dl {args.dl}: the obstacle level must be in 0..74")
    check_warm_start(run, state, k)
    trainable(run, state, k)  # a budget given away or a trunk not trained: refused here
    sinks: list[LogSink] = []
    runner = local_runner(run.config, log_for=lambda spec: sinks[0] if sinks else None)
    write_effective_config(run)
    spec = prepare_training(run, state, k)
    if args.dl is not None:
        spec = spec.model_copy(update={"start_level": args.dl})
    if args.max_iterations is not None:
        spec = spec.model_copy(update={"max_iterations": args.max_iterations})
    with progress_bar() as progress:
        bar = progress.add_task(
            f"expert {k} it {state.iteration}", total=spec.max_iterations, info=""
        )

        def on_line(line: str) -> None:
            match = PROGRESS_LINE.search(line)
            if match:
                progress.update(bar, completed=int(match.group(1)), info=match.group(3)[:60])
            else:
                progress.console.print(line)

        sinks.append(on_line)
        outcomes = train_experts(run, state, runner, specs=[spec], reuse=False)
    new_state, _, missing = commit_training(run, state, version, outcomes)
    (outcome,) = outcomes
    expert = new_state.experts[k]
    result = outcome.train_result()
    if result is not None:
        console.print(f"expert {k} trained: {expert.checkpoint}")
        for name, value in sorted(result.metrics.items()):
            console.print(f"  {name}: {value:.4g}")
        if result.warning:
            console.print(f"[yellow]warning:[/] {result.warning}")
        return 0
    if missing:
        raise StateError(f"expert {k} failed and has no previous checkpoint: {outcome.error}")
    console.print(
        f"[yellow]expert {k} failed; falls back to {expert.checkpoint}[/]: {outcome.error}"
    )
    return 0


def cmd_train_trunk(args: argparse.Namespace) -> int:
    from pec.iteration.driver import commit_trunk, trunk_status

    run = open_run_from_args(args, ["trunk_share", "max_iterations_iter0", "num_envs"])
    state, version = load_run_state(run)
    if trunk_plan(run)[0] < 1:
        raise InputError(
            f"--trunk_share {run.config.trunk_share}: leaves the trunk no PPO iteration; pass "
            "a share in (0, 1), e.g. --trunk_share 0.5"
        )
    runner = local_runner(run.config)
    write_effective_config(run)
    new_state, _, outcome = commit_trunk(run, state, version, runner)
    assert new_state.trunk is not None
    console.print(
        f"trunk {trunk_status(outcome)} ({new_state.trunk.ppo_iterations} PPO iterations): "
        f"{new_state.trunk.checkpoint}"
    )
    result = outcome.train_result()
    for name, value in sorted((result.metrics if result else {}).items()):
        console.print(f"  {name}: {value:.4g}")
    return 0


def cmd_frontier(args: argparse.Namespace) -> int:
    run = open_run_from_args(args, ["F", "sampling_mode"])
    state, _ = load_run_state(run)
    write_effective_config(run)
    selection = frontier_candidates(run, state)
    console.print(
        f"{len(selection.designs)} candidates ({selection.mode}, {selection.band_count} from the band): "
        f"{run.store.uri(layout.candidates_key(run.name, state.iteration))}"
    )
    return 0


def cmd_evaluate_frontier(args: argparse.Namespace) -> int:
    from pec.iteration.driver import evaluate_frontier

    run = open_run_from_args(args, ["F", "sampling_mode", "num_episodes", "start_difficulty"])
    state, _ = load_run_state(run)
    check_expert_checkpoints(run.store, state, present_only=True)
    runner = local_runner(run.config)
    write_effective_config(run)
    with progress_bar() as progress:
        bar = progress.add_task("frontier", total=len(state.experts), info="")
        without = [e.id for e in state.experts if not checkpoint_exists(run, e.checkpoint)]
        for k in without:
            progress.console.print(f"expert {k}: no checkpoint, not evaluated")
            progress.advance(bar)

        def on_outcome(outcome: Any) -> None:
            result = outcome.eval_result()
            if result is None:
                info = f"expert {outcome.expert_id} failed: {outcome.error}"
                progress.console.print(info)
            else:
                info = f"expert {outcome.expert_id} mean {np.mean(result.levels):.1f}"
            progress.update(bar, info=info)
            progress.advance(bar)

        evaluate_frontier(run, state, runner, reuse=False, on_outcome=on_outcome)
    console.print(f"scores: {run.store.uri(layout.scores_key(run.name, state.iteration))}")
    return 0


def _read_scores_file(path: Path) -> dict[str, Any]:
    from pec.runs.safe_io import parse_json, read_local_file

    source = f"--scores '{path}'"
    data = parse_json(read_local_file(path, source, InputError), source, InputError)
    if isinstance(data, list):
        data = {"scores": data}
    if not isinstance(data, dict) or "scores" not in data:
        raise InputError(
            f"--scores '{path}': expected {{\"scores\": [[...K rows of F numbers...]]}} or a list of rows"
        )
    return data


def cmd_refit(args: argparse.Namespace) -> int:
    from pec.iteration.lease import hold_iteration, process_holder

    run = open_run_from_args(args, ["min_var_scale", "min_designs"])
    state, version = load_run_state(run)
    # everything the refit reads is checked before the lease or any record is written
    candidates = read_candidates(run, state.iteration)
    scores = None if args.scores is None else _read_scores_file(Path(args.scores))
    checked = scores if scores is not None else read_scores(run, state.iteration)
    if checked is None:
        raise StateError(
            f"iteration {state.iteration} has no scores.json; run `pec evaluate-frontier` first"
        )
    score_matrix(checked, len(state.experts), len(candidates))
    # The scores, assignments and state of a refit are one unit: written only under the
    # iteration's lease and only while the state is still the one read above, so a second
    # refit (or a driver) racing this one never leaves its records beside our state.
    holder = process_holder("pec refit")
    with hold_iteration(run.store, run.name, state.iteration, holder, run.config):
        if load_run_state(run)[1] != version:
            raise ConflictError(
                f"run '{run.name}': its state changed since this refit read it (another "
                f"command committed iteration {state.iteration} first); nothing was written, "
                "check `pec status` and refit again if needed"
            )
        write_effective_config(run)
        if scores is not None:
            selection = CandidateSelection(
                designs=candidates,
                max_log_density=np.zeros(len(candidates)),
                mode="manual",
                band_count=0,
                pool_size=len(candidates),
            )
            rows = scores["scores"]
            write_scores(run, state, selection, {k: rows[k] for k in range(len(rows))})
        new_state, _ = refit_iteration(run, state, version)
    console.print(
        f"refit of iteration {state.iteration} done; coverage {latest_coverage(new_state):.3f}"
    )
    _experts_table(new_state)
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    from pec.presentation.visualize import render_coverage, render_initial, render_iteration

    store, _ = open_run_store(args.store)
    state = load_state_or_fail(store, args.run_name)
    keys = [render_initial(store, state)]
    iterations = [args.itr] if args.itr is not None else [h.iteration for h in state.history]
    for it in iterations:
        keys.extend(render_iteration(store, state, it, frontier=not args.no_frontier))
    cov = render_coverage(store, state, None)
    if cov:
        keys.append(cov)
    for key in keys:
        console.print(store.uri(key))
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    store, _ = open_run_store(args.store)
    state = load_state_or_fail(store, args.run_name)
    check_expert_checkpoints(store, state)  # a route names the checkpoint to deploy
    space = state_space(state)
    if args.designs_file:
        designs = read_designs_file(Path(args.designs_file), space)
        points = np.asarray([d.values() for d in designs], dtype=float)
        ids = [d.id for d in designs]
    elif args.GCR is not None and args.spcf is not None:
        if (args.leg is not None) != (space.dim == 3):
            raise InputError(
                f"--leg: run '{state.run_name}' is 3-D (GCR x spcf x leg); pass --leg too"
                if args.leg is None
                else f"--leg: run '{state.run_name}' is 2-D (GCR x spcf); drop --leg"
            )
        extra = [args.leg] if args.leg is not None else []
        points = np.asarray([[args.GCR, args.spcf, *extra]], dtype=float)
        ids = [0]
    else:
        raise InputError("route: pass --GCR and --spcf (and --leg in a 3-D run), or --designs_file")
    evidence = None
    if args.router == "score_informed":
        evidence = run_evidence(store, state.run_name, len(state.experts), state.iteration)
    experts = route_designs(points, state, space, args.router, evidence)
    if args.json:
        rows = [
            {
                "design": ids[i],
                **{key: float(v) for key, v in zip(space.keys, p, strict=True)},
                "expert": int(k),
            }
            for i, (p, k) in enumerate(zip(points, experts, strict=True))
        ]
        print(json.dumps({"router": args.router, "routes": rows}))
        return 0
    table = Table("design", *space.keys, "expert", "checkpoint")
    formats = ("{:.4f}", "{:.5f}", "{:.3f}")
    for i, (p, k) in enumerate(zip(points, experts, strict=True)):
        table.add_row(
            str(ids[i]),
            *(formats[a].format(p[a]) for a in range(space.dim)),
            str(int(k)),
            str(state.experts[int(k)].checkpoint),
        )
    console.print(table)
    return 0


def _experts_table(state: PECState) -> None:
    table = Table(title=f"{state.run_name}: {state.iteration} completed iteration(s)")
    keys = list(state.design_space)  # GCR, spcf (, leg)
    formats = ("{:.4f}", "{:.5f}", "{:.3f}")
    for col in (
        "expert",
        *(f"mu {k}" for k in keys),
        *(f"std {k}" for k in keys),
        "designs",
        "last trained",
        "checkpoint",
    ):
        table.add_column(col)
    for e in state.experts:
        table.add_row(
            str(e.id),
            *(formats[a].format(e.mu[a]) for a in range(len(keys))),
            *(formats[a].format(e.sigma[a][a] ** 0.5) for a in range(len(keys))),
            str(len(e.designs)),
            "-" if e.last_trained_pec_iter is None else str(e.last_trained_pec_iter),
            e.checkpoint or "-",
        )
    console.print(table)
    if state.trunk is not None:
        t = state.trunk
        console.print(
            f"trunk: {'trained' if t.trained else 'not trained'}, {t.ppo_iterations} PPO "
            f"iterations, checkpoint {t.checkpoint or '-'}, failures {len(t.failures)}"
        )


def _budgets_table(state: PECState) -> None:
    if not state.budgets:
        return
    table = Table(title="PPO iterations per expert (0: gave its budget to the winners)")
    table.add_column("iteration")
    table.add_column("rule")
    for e in state.experts:
        table.add_column(f"expert {e.id}")
    table.add_column("wins at the iteration before")
    for b in state.budgets:
        won = "-" if b.won_counts is None else ", ".join(str(w) for w in b.won_counts)
        table.add_row(str(b.iteration), b.rule, *(str(v) for v in b.ppo_iterations), won)
    console.print(table)


def cmd_status(args: argparse.Namespace) -> int:
    store, _ = open_run_store(args.store)
    state = load_state_or_fail(store, args.run_name)
    _experts_table(state)
    _budgets_table(state)
    console.print(status_history_table(store, state))
    cov = Table(title="coverage per iteration")
    cov.add_column("iteration")
    cov.add_column("coverage after refit")
    cov.add_row("init", f"{state.init_realized_coverage:.3f}")
    for record in state.coverage:
        cov.add_row(str(record.iteration), f"{record.coverage:.3f}")
    console.print(cov)
    failures = [(str(e.id), f) for e in state.experts for f in e.failures]
    failures += [("trunk", f) for f in (state.trunk.failures if state.trunk else [])]
    if failures:
        fail = Table(title="failures")
        for col in ("expert", "iteration", "fallback", "message"):
            fail.add_column(col)
        for k, f in failures:
            fail.add_row(k, str(f.iteration), f.fallback_checkpoint or "-", f.message[:120])
        console.print(fail)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pec.iteration.driver import IterationReport, run_until_done
    from pec.presentation.visualize import render_all_soft

    run = open_run_from_args(
        args,
        [
            "K",
            "max_pec_iterations",
            "max_iterations",
            "max_iterations_iter0",
            "trunk_share",
            "budget_rule",
        ],
    )
    runner = local_runner(run.config)

    def report(r: IterationReport) -> None:
        cov = "-" if r.coverage is None else f"{r.coverage:.3f}"
        console.print(
            f"iteration {r.iteration}: trained {r.trained}, reused {r.reused}, "
            f"failed {sorted(r.failed)}, coverage {cov}"
            + (f" -> stop: {r.stop_reason}" if r.stop_reason else "")
        )

    from pec.iteration.lease import DuplicateRunError

    try:
        state = run_until_done(run, runner, on_iteration=report, plot=render_all_soft)
    except DuplicateRunError as exc:  # not a failure: the iteration is in good hands
        console.print(f"[yellow]{exc}[/]")
        return 0
    console.print(
        f"run [bold]{run.name}[/] finished after {state.iteration} iteration(s); "
        f"results in {prefix_uri(run.store, layout.run_prefix(run.name))}"
    )
    return 0


def add_run_commands(sub: Any) -> None:
    """Register the run's sub-commands on the main parser's subparsers."""
    p = sub.add_parser("init", help="seed K Gaussians and write pec_state.json")
    add_common(p)
    p.add_argument("--K", type=int)
    p.add_argument("--GCR_range", type=pair)
    p.add_argument("--spcf_range", type=pair)
    p.add_argument("--leg_range", type=pair, help="leg length [lo, hi] in metres: a 3-D run")
    p.add_argument("--sigma_scale", type=float)
    p.add_argument("--centers", type=centers)
    p.add_argument("--usd_rel_path")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("train-expert", help="train one expert for the current iteration")
    add_common(p)
    p.add_argument("--expert_id", type=int, required=True)
    p.add_argument("--max_iterations", type=int)
    p.add_argument("--num_envs", type=int)
    p.add_argument("--dl", type=int, help="starting obstacle level (default: dl auto-scaling)")
    p.set_defaults(func=cmd_train_expert)

    p = sub.add_parser(
        "train-trunk",
        help="iteration 0 with trunk_share > 0: train the trunk every expert then forks from",
    )
    add_common(p)
    p.add_argument("--trunk_share", type=float, help="share of iteration 0's PPO budget")
    p.add_argument("--max_iterations_iter0", type=int)
    p.add_argument("--num_envs", type=int)
    p.set_defaults(func=cmd_train_trunk)

    p = sub.add_parser("frontier", help="write this iteration's frontier candidates only")
    add_common(p)
    p.add_argument("--F", type=int)
    p.add_argument("--sampling_mode", choices=["auto", "border", "frontier"])
    p.set_defaults(func=cmd_frontier)

    p = sub.add_parser("evaluate-frontier", help="evaluate every expert on F frontier candidates")
    add_common(p)
    p.add_argument("--F", type=int)
    p.add_argument("--sampling_mode", choices=["auto", "border", "frontier"])
    p.add_argument(
        "--num_episodes", type=int, help="score final_level only (refused under level_search)"
    )
    p.add_argument(
        "--start_difficulty", type=int, help="score final_level only (refused under level_search)"
    )
    p.set_defaults(func=cmd_evaluate_frontier)

    p = sub.add_parser("refit", help="assign the frontier to winners and refit the Gaussians")
    add_common(p)
    p.add_argument("--min_var_scale", type=float)
    p.add_argument("--min_designs", type=int)
    p.add_argument(
        "--scores",
        help="hand-written scores JSON (K rows of F levels) for this iteration's candidates",
    )
    p.set_defaults(func=cmd_refit)

    p = sub.add_parser("visualize", help="write the run's plots into the store")
    add_common(p, config=False)
    p.add_argument("--itr", type=int, help="draw iteration N from history[N]")
    p.add_argument("--no_frontier", action="store_true")
    p.set_defaults(func=cmd_visualize)

    p = sub.add_parser("route", help="route designs to experts (nearest centre or by scores)")
    add_common(p, config=False)
    p.add_argument("--GCR", type=float)
    p.add_argument("--spcf", type=float)
    p.add_argument("--leg", type=float, help="leg length in metres (3-D runs)")
    p.add_argument("--designs_file")
    p.add_argument(
        "--router",
        choices=ROUTERS,
        default="nearest_centre",
        help="nearest_centre (the spec's rule) or score_informed (the run's evaluations)",
    )
    p.add_argument("--json", action="store_true", help="print the routes as one JSON line")
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("status", help="experts, coverage per iteration and failures of a run")
    add_common(p, config=False)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("run", help="run PEC iterations in this process without Prefect")
    add_common(p)
    p.add_argument("--K", type=int)
    p.add_argument("--max_pec_iterations", type=int)
    p.add_argument("--max_iterations", type=int)
    p.add_argument("--max_iterations_iter0", type=int)
    p.add_argument(
        "--trunk_share", type=float, help="fork the experts from a trunk given this share"
    )
    p.add_argument("--budget_rule", choices=["equal", "wins", "proportional"])
    p.set_defaults(func=cmd_run)
