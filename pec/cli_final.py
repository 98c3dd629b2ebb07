"""`pec eval-final`, `designs uniform`, `baseline train|eval`, `report`, `export`, `compare`.

Registered into the main parser by `add_final_commands(subparsers)`; `pec.cli` is imported
lazily inside the commands so that `pec.cli` can import this module at its top. Like every
pec command, input is validated before anything is written and a PECError becomes one line
on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from pec import layout
from pec.design_space import DesignSpace
from pec.designs_file import Design, dump_designs, read_designs_file, uniform_designs
from pec.errors import InputError, NotFoundError, StateError
from pec.state import PECState
from pec.store import Store

log = logging.getLogger(__name__)


def _cli() -> Any:
    import pec.cli

    return pec.cli


def _load_state(store: Store, run_name: str) -> PECState:
    from pec.run_names import validate_run_name
    from pec.state_io import load_state

    loaded = load_state(store, validate_run_name(run_name))
    if loaded is None:
        raise StateError(
            f"run '{run_name}' has no pec_state.json in {store.root_uri}; run `pec init` first"
        )
    return loaded[0]


def _protocol(
    args: argparse.Namespace, num_episodes: int, start_difficulty: int
) -> tuple[int, int]:
    """Final-evaluation protocol: flags win over the run's frontier protocol (not recorded)."""
    episodes = args.num_episodes if args.num_episodes is not None else num_episodes
    start = args.start_difficulty if args.start_difficulty is not None else start_difficulty
    if episodes < 1:
        raise InputError(f"--num_episodes {episodes}: need at least one episode")
    if not 0 <= start <= 74:
        raise InputError(f"--start_difficulty {start}: the obstacle level must be in 0..74")
    return episodes, start


def _designs(path: str, space: DesignSpace) -> tuple[list[Design], str]:
    from pec.final_eval import designs_stem

    designs = read_designs_file(Path(path), space)
    return designs, designs_stem(path)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------- eval-final


def cmd_eval_final(args: argparse.Namespace) -> int:
    from pec.final_eval import run_final_eval

    cli = _cli()
    run = cli.open_run(args)
    state, _ = cli.steps.load_run_state(run)
    designs, stem = _designs(args.designs_file, run.space)
    episodes, start = _protocol(args, run.config.num_episodes, run.config.start_difficulty)
    executor = cli._executor(run.config)
    with cli.progress_bar() as progress:
        bar = progress.add_task(f"final eval {stem}", total=len(state.experts), info="")

        def on_expert(k: int, levels: list[int] | None, reused: bool) -> None:
            if levels is None:
                info = f"expert {k}: not evaluated"
            else:
                info = f"expert {k} mean {np.mean(levels):.2f}" + (" (reused)" if reused else "")
            progress.console.print(info)
            progress.update(bar, info=info)
            progress.advance(bar)

        summary = run_final_eval(
            run,
            state,
            designs,
            stem,
            executor,
            num_episodes=episodes,
            start_difficulty=start,
            on_expert=on_expert,
        )
    table = Table(title=f"{run.name} on {stem} ({len(designs)} designs)")
    table.add_column("policy")
    table.add_column("mean level")
    table.add_row("PEC oracle", _fmt(summary["oracle_mean"]))
    table.add_row("PEC routed", _fmt(summary["routed_mean"]))
    for k, mean in enumerate(summary["expert_means"]):
        table.add_row(f"expert {k}", _fmt(mean))
    cli.console.print(table)
    cli.console.print(f"summary: {run.store.uri(layout.final_eval_summary_key(run.name, stem))}")
    return 0


# ---------------------------------------------------------------- designs uniform


def cmd_designs_uniform(args: argparse.Namespace) -> int:
    cli = _cli()
    if args.GCR_range is not None or args.spcf_range is not None:
        from pec.config import build_config

        defaults = build_config()
        space = DesignSpace(
            gcr=args.GCR_range or defaults.GCR_range, spcf=args.spcf_range or defaults.spcf_range
        )
    elif args.run_name is not None:
        from pec.steps import state_space

        store, _ = cli.open_run_store(args.store)
        space = state_space(_load_state(store, args.run_name))
    else:
        raise InputError(
            "designs uniform: pass --run_name (use the run's design space) or "
            "--GCR_range/--spcf_range"
        )
    designs = uniform_designs(space, args.n, args.seed)
    out = Path(args.out)
    if out.suffix != ".json":
        raise InputError(f"--out {out}: use a .json file name (its stem names final_eval/<stem>/)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(dump_designs(designs))
    cli.console.print(
        f"{len(designs)} uniform designs (seed {args.seed}) in GCR {list(space.gcr)}, "
        f"spcf {list(space.spcf)}: {out}"
    )
    return 0


# ---------------------------------------------------------------- baseline


def cmd_baseline_train(args: argparse.Namespace) -> int:
    from pec.baseline import train_baseline

    cli = _cli()
    run = cli.open_run(args)
    state, _ = cli.steps.load_run_state(run)
    if args.chunks < 1:
        raise InputError(f"--chunks {args.chunks}: need at least one chunk")
    if args.num_envs is not None and args.num_envs < 1:
        raise InputError(f"--num_envs {args.num_envs}: need at least one environment")
    executor = cli._executor(run.config)

    def on_chunk(chunk: int, total: int, info: dict[str, Any]) -> None:
        steps = (info.get("metrics") or {}).get("env_steps")
        cli.console.print(
            f"chunk {chunk + 1}/{total}: {info['ppo_iterations']} PPO iterations, "
            f"{_fmt(steps, 0)} env steps -> {info['checkpoint_uri']}"
        )

    record = train_baseline(
        run,
        state,
        executor,
        num_envs=args.num_envs,
        chunks=args.chunks,
        max_iterations=args.max_iterations,
        log_sink=lambda line: log.info("baseline: %s", line),
        on_chunk=on_chunk,
        replica=args.replica,
    )
    cli.console.print(
        f"generalist trained: {record['baseline_env_steps']:.0f} env steps "
        f"(PEC budget {record['pec_budget']['env_steps']:.0f}); checkpoint {record['checkpoint']}"
    )
    return 0


def cmd_baseline_eval(args: argparse.Namespace) -> int:
    from pec.baseline import baseline_eval_key, evaluate_baseline

    cli = _cli()
    run = cli.open_run(args)
    state, _ = cli.steps.load_run_state(run)
    designs, stem = _designs(args.designs_file, run.space)
    episodes, start = _protocol(args, run.config.num_episodes, run.config.start_difficulty)
    executor = cli._executor(run.config)
    payload = evaluate_baseline(
        run,
        state,
        designs,
        stem,
        executor,
        num_episodes=episodes,
        start_difficulty=start,
        replica=args.replica,
    )
    cli.console.print(
        f"generalist on {stem}: mean level {payload['mean']:.3f} "
        f"({run.store.uri(baseline_eval_key(run.name, stem, args.replica))})"
    )
    return 0


# ---------------------------------------------------------------- report


def _stem_arg(args: argparse.Namespace) -> str:
    from pec.final_eval import designs_stem

    if args.designs_stem:
        return str(args.designs_stem)
    if args.designs_file:
        return designs_stem(args.designs_file)
    raise InputError("report: pass --designs_file or --designs_stem (the final_eval/<stem> folder)")


def cmd_report(args: argparse.Namespace) -> int:
    from pec.report import comparison_numbers, comparison_rows, load_report_data, write_report
    from pec.run_names import validate_run_name

    cli = _cli()
    store, _ = cli.open_run_store(args.store)
    run_name = validate_run_name(args.run_name)
    stem = _stem_arg(args)
    keys = write_report(store, run_name, stem)
    numbers = comparison_numbers(load_report_data(store, run_name, stem))
    table = Table(title=f"{run_name} on {stem}")
    for column in ("policy", "mean_level", "over_baseline", "wins", "ties", "losses"):
        table.add_column(column)
    for row in comparison_rows(numbers):
        table.add_row(*("-" if v is None else str(v) for v in row.values()))
    cli.console.print(table)
    for name, key in keys.items():
        cli.console.print(f"{name}: {store.uri(key)}")
    return 0


# ---------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    from pec.bundle import export_bundle

    cli = _cli()
    store, _ = cli.open_run_store(args.store)
    state = _load_state(store, args.run_name)
    manifest = export_bundle(
        store, state, Path(args.out), which=args.checkpoint, overwrite=args.overwrite
    )
    data = json.loads(manifest.read_text())
    cli.console.print(
        f"bundle of {len(data['experts'])} expert(s) ({args.checkpoint} checkpoints) in "
        f"{manifest.parent}; obs {data['obs_dim']} -> actions {data['action_dim']}"
    )
    for expert in data["experts"]:
        checks = expert["verification"]
        cli.console.print(
            f"  expert {expert['id']}: TorchScript max |diff| "
            f"{checks['torchscript_max_abs_diff']:.2e}, ONNX {checks['onnx_max_abs_diff']:.2e}"
        )
    return 0


# ---------------------------------------------------------------- status history and compare


def _read_json(store: Store, key: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(store.read_bytes(key)))
    except NotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s is not valid JSON; ignored", store.uri(key))
        return None


def iteration_history(store: Store, state: PECState) -> list[dict[str, Any]]:
    """Per completed (or running) iteration: coverage, frontier means, wins, failures, env steps."""
    rows: list[dict[str, Any]] = []
    after = {c.iteration: c.coverage for c in state.coverage}
    before = {h.iteration: h.coverage_before for h in state.history}
    K = len(state.experts)
    for it in range(state.iteration + 1):
        scores = _read_json(store, layout.scores_key(state.run_name, it))
        assignments = _read_json(store, layout.assignments_key(state.run_name, it))
        means: list[float | None] = [None] * K
        if scores is not None:
            for k, row in enumerate(scores.get("scores") or []):
                if row and k < K:
                    means[k] = float(np.mean(row))
        steps = 0.0
        trained = 0
        for k in range(K):
            result = _read_json(store, layout.train_result_key(state.run_name, k, it))
            if result is not None:
                trained += 1
                steps += float((result.get("metrics") or {}).get("env_steps", 0.0))
        failures = [e.id for e in state.experts for f in e.failures if f.iteration == it]
        if it == state.iteration and scores is None and trained == 0 and not failures:
            break  # the next iteration has not started
        rows.append(
            {
                "iteration": it,
                "coverage_before": before.get(it),
                "coverage_after": after.get(it),
                "frontier_means": means,
                "won": (assignments or {}).get("won_counts"),
                "trained": trained,
                "env_steps": steps,
                "failed_experts": failures,
            }
        )
    return rows


def status_history_table(store: Store, state: PECState) -> Table:
    """`pec status`: one row per iteration (coverage, mean frontier score per expert, failures)."""
    table = Table(title=f"{state.run_name}: history per iteration")
    for column in (
        "iteration",
        "coverage before",
        "coverage after",
        "frontier mean per expert",
        "won",
        "trained",
        "env steps",
        "failed",
    ):
        table.add_column(column)
    for row in iteration_history(store, state):
        means = ", ".join(_fmt(m, 1) for m in row["frontier_means"])
        table.add_row(
            str(row["iteration"]),
            _fmt(row["coverage_before"]),
            _fmt(row["coverage_after"]),
            f"[{means}]",
            "-" if row["won"] is None else str(row["won"]),
            str(row["trained"]),
            f"{row['env_steps']:.0f}",
            ", ".join(str(k) for k in row["failed_experts"]) or "-",
        )
    return table


def run_overview(store: Store, state: PECState) -> dict[str, Any]:
    """What `pec compare` puts side by side for one run."""
    history = iteration_history(store, state)
    stems: dict[str, dict[str, Any]] = {}
    prefix = layout.run_prefix(state.run_name) + "final_eval/"
    for key in store.list(prefix):
        if key.endswith("/summary.json") and key.count("/") == prefix.count("/") + 1:
            payload = _read_json(store, key)
            if payload is not None:
                stems[key[len(prefix) : -len("/summary.json")]] = payload
    return {
        "run": state.run_name,
        "K": len(state.experts),
        "iterations": state.iteration,
        "coverage": state.coverage[-1].coverage if state.coverage else state.init_realized_coverage,
        "env_steps": sum(r["env_steps"] for r in history),
        "failures": sum(len(e.failures) for e in state.experts),
        "final_eval": stems,
    }


def compare_table(a: dict[str, Any], b: dict[str, Any]) -> Table:
    table = Table(title=f"{a['run']} vs {b['run']}")
    table.add_column("")
    table.add_column(a["run"])
    table.add_column(b["run"])
    for name, digits in (
        ("K", 0),
        ("iterations", 0),
        ("coverage", 3),
        ("env_steps", 0),
        ("failures", 0),
    ):
        table.add_row(name, _fmt(float(a[name]), digits), _fmt(float(b[name]), digits))
    common = sorted(set(a["final_eval"]) & set(b["final_eval"]))
    for stem in common:
        sa, sb = a["final_eval"][stem], b["final_eval"][stem]
        same = [d["id"] for d in sa["designs"]] == [d["id"] for d in sb["designs"]]
        note = "" if same else " (different designs!)"
        table.add_row(
            f"{stem}: oracle mean{note}", _fmt(sa["oracle_mean"]), _fmt(sb["oracle_mean"])
        )
        table.add_row(
            f"{stem}: routed mean{note}", _fmt(sa["routed_mean"]), _fmt(sb["routed_mean"])
        )
    if not common:
        table.add_row("final evaluation", "no designs set in common", "")
    return table


def cmd_compare(args: argparse.Namespace) -> int:
    cli = _cli()
    store, _ = cli.open_run_store(args.store)
    overviews = [run_overview(store, _load_state(store, name)) for name in (args.run_a, args.run_b)]
    cli.console.print(compare_table(overviews[0], overviews[1]))
    return 0


# ---------------------------------------------------------------- parser


def add_final_commands(subparsers: Any) -> None:
    """Register this module's sub-commands on the main parser's subparsers."""
    cli = _cli()
    add_common: Callable[..., None] = cli._add_common

    p = subparsers.add_parser("eval-final", help="evaluate every expert on a designs file")
    add_common(p)
    p.add_argument("--designs_file", required=True, help='JSON [{"id", "GCR", "spcf"}, ...]')
    p.add_argument("--num_episodes", type=int, help="default: the run's num_episodes")
    p.add_argument("--start_difficulty", type=int, help="default: the run's start_difficulty")
    p.set_defaults(func=cmd_eval_final)

    p = subparsers.add_parser("designs", help="write designs files")
    designs = p.add_subparsers(dest="designs_command", required=True)
    u = designs.add_parser("uniform", help="n uniform designs in the run's (or a given) box")
    u.add_argument("--n", type=int, required=True)
    u.add_argument("--seed", type=int, default=42)
    u.add_argument("--out", required=True, help="output .json file")
    u.add_argument("--run_name", "--run-name", help="take the design space from this run")
    u.add_argument("--store", default=os.environ.get("PEC_STORE", cli.DEFAULT_STORE))
    u.add_argument("--GCR_range", type=cli._pair)
    u.add_argument("--spcf_range", type=cli._pair)
    u.set_defaults(func=cmd_designs_uniform)

    p = subparsers.add_parser("baseline", help="the generalist with PEC's env-step budget")
    baseline = p.add_subparsers(dest="baseline_command", required=True)
    t = baseline.add_parser("train", help="train one policy on uniform designs of the whole box")
    add_common(t)
    t.add_argument("--num_envs", type=int, help="default: the run's num_envs")
    t.add_argument("--chunks", type=int, default=1, help="warm-started pieces, fresh samples each")
    t.add_argument("--max_iterations", type=int, help="total PPO iterations (overrides budget)")
    t.add_argument(
        "--replica", type=int, default=0, help="r > 0: a further generalist, other seeds"
    )
    t.set_defaults(func=cmd_baseline_train)
    e = baseline.add_parser("eval", help="evaluate the generalist on a designs file")
    add_common(e)
    e.add_argument("--designs_file", required=True)
    e.add_argument("--num_episodes", type=int)
    e.add_argument("--start_difficulty", type=int)
    e.add_argument("--replica", type=int, default=0)
    e.set_defaults(func=cmd_baseline_eval)

    p = subparsers.add_parser("report", help="comparison plots and markdown of a final evaluation")
    add_common(p, config=False)
    p.add_argument("--designs_file")
    p.add_argument("--designs_stem")
    p.set_defaults(func=cmd_report)

    p = subparsers.add_parser("export", help="write a deployable policy bundle")
    add_common(p, config=False)
    p.add_argument("--out", required=True, help="bundle folder")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("compare", help="two runs side by side")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--store", default=os.environ.get("PEC_STORE", cli.DEFAULT_STORE))
    p.set_defaults(func=cmd_compare)
