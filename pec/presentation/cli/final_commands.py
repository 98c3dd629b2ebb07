"""`pec eval-final`, `designs uniform`, `baseline train|eval`, `distill`, `report`, `export`,
`compare`.

Registered into the main parser by `add_final_commands(subparsers)`. Like every pec command,
input is validated before anything is written and a PECError becomes one line on stderr with
exit code 2 (`pec.presentation.cli.main`). Modules that import matplotlib or torch (drivers, report,
bundle) are imported inside the commands that need them, so that the others answer at once.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from pec.errors import InputError
from pec.evaluation.designs_file import Design, dump_designs, read_designs_file, uniform_designs
from pec.evaluation.final_eval_jobs import FinalProtocol, designs_stem, final_protocol
from pec.jobs.plan import local_runner
from pec.maths.design_space import DesignSpace
from pec.maths.protocols import SCORE_NAMES
from pec.presentation.cli.common import add_common, default_store, open_run_from_args, pair
from pec.presentation.cli.history import compare_table, run_overview
from pec.presentation.console import console, progress_bar
from pec.runs import layout
from pec.runs.config import MAX_ENVS, MAX_MUJOCO_ENVS, PECConfig, build_config
from pec.runs.run import load_run_state, load_state_or_fail, open_run_store, state_space
from pec.runs.run_names import validate_run_name

log = logging.getLogger(__name__)


def _protocol(args: argparse.Namespace, config: PECConfig) -> FinalProtocol:
    """Final-evaluation protocol: --score (default: the run's), --num_episodes and
    --start_difficulty (final_level only) win over the run's config."""
    return final_protocol(config, args.score, args.num_episodes, args.start_difficulty)


def _designs(path: str, space: DesignSpace) -> tuple[list[Design], str]:
    designs = read_designs_file(Path(path), space)
    return designs, designs_stem(path)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------- eval-final


def cmd_eval_final(args: argparse.Namespace) -> int:
    from pec.evaluation.final_eval_driver import run_final_eval

    run = open_run_from_args(args)
    protocol = _protocol(args, run.config)
    state, _ = load_run_state(run)
    designs, stem = _designs(args.designs_file, run.space)
    runner = local_runner(run.config)
    with progress_bar() as progress:
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
            runner,
            num_episodes=protocol.num_episodes,
            start_difficulty=protocol.start_difficulty,
            score=protocol.score,
            on_expert=on_expert,
        )
    table = Table(title=f"{run.name} on {stem} ({len(designs)} designs)")
    table.add_column("policy")
    table.add_column("mean level")
    table.add_row("PEC oracle", _fmt(summary["oracle_mean"]))
    table.add_row("PEC routed", _fmt(summary["routed_mean"]))
    if summary.get("score_routed_mean") is not None:
        table.add_row("PEC routed (score-informed)", _fmt(summary["score_routed_mean"]))
    for k, mean in enumerate(summary["expert_means"]):
        table.add_row(f"expert {k}", _fmt(mean))
    console.print(table)
    console.print(f"summary: {run.store.uri(layout.final_eval_summary_key(run.name, stem))}")
    return 0


# ---------------------------------------------------------------- designs uniform


def cmd_designs_uniform(args: argparse.Namespace) -> int:
    if args.GCR_range is not None or args.spcf_range is not None or args.leg_range is not None:
        defaults = build_config()
        space = DesignSpace(
            gcr=args.GCR_range or defaults.GCR_range,
            spcf=args.spcf_range or defaults.spcf_range,
            leg=args.leg_range,
        )
    elif args.run_name is not None:
        store, _ = open_run_store(args.store)
        space = state_space(load_state_or_fail(store, args.run_name))
    else:
        raise InputError(
            "designs uniform: pass --run_name (use the run's design space) or "
            "--GCR_range/--spcf_range(/--leg_range)"
        )
    designs = uniform_designs(space, args.n, args.seed)
    out = Path(args.out)
    if out.suffix != ".json":
        raise InputError(f"--out {out}: use a .json file name (its stem names final_eval/<stem>/)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(dump_designs(designs))
    box = ", ".join(f"{k} {list(b)}" for k, b in zip(space.keys, space.bounds, strict=True))
    console.print(f"{len(designs)} uniform designs (seed {args.seed}) in {box}: {out}")
    return 0


# ---------------------------------------------------------------- baseline


def baseline_log(line: str) -> None:
    log.info("baseline: %s", line)


def cmd_baseline_train(args: argparse.Namespace) -> int:
    from pec.evaluation.baseline import train_baseline

    run = open_run_from_args(args)
    state, _ = load_run_state(run)
    if not 1 <= args.chunks <= 1000:
        raise InputError(f"--chunks {args.chunks}: pass 1..1000 chunks")
    most = MAX_MUJOCO_ENVS if run.config.backend == "mujoco" else MAX_ENVS
    if args.num_envs is not None and not 1 <= args.num_envs <= most:
        raise InputError(
            f"--num_envs {args.num_envs}: pass 1..{most:,} environments ({run.config.backend})"
        )
    if args.max_iterations is not None and not 1 <= args.max_iterations <= 1_000_000:
        raise InputError(f"--max_iterations {args.max_iterations}: pass 1..1,000,000")
    runner = local_runner(run.config, log_for=lambda spec: baseline_log)

    def on_chunk(chunk: int, total: int, info: dict[str, Any]) -> None:
        steps = (info.get("metrics") or {}).get("env_steps")
        console.print(
            f"chunk {chunk + 1}/{total}: {info['ppo_iterations']} PPO iterations, "
            f"{_fmt(steps, 0)} env steps -> {info['checkpoint_uri']}"
        )

    record = train_baseline(
        run,
        state,
        runner,
        num_envs=args.num_envs,
        chunks=args.chunks,
        max_iterations=args.max_iterations,
        on_chunk=on_chunk,
        replica=args.replica,
    )
    console.print(
        f"generalist trained: {record['baseline_env_steps']:.0f} env steps "
        f"(PEC budget {record['pec_budget']['env_steps']:.0f}); checkpoint {record['checkpoint']}"
    )
    return 0


def cmd_baseline_eval(args: argparse.Namespace) -> int:
    from pec.evaluation.baseline import baseline_eval_key, evaluate_baseline

    run = open_run_from_args(args)
    protocol = _protocol(args, run.config)
    state, _ = load_run_state(run)
    designs, stem = _designs(args.designs_file, run.space)
    runner = local_runner(run.config)
    payload = evaluate_baseline(
        run,
        state,
        designs,
        stem,
        runner,
        num_episodes=protocol.num_episodes,
        start_difficulty=protocol.start_difficulty,
        replica=args.replica,
        score=protocol.score,
    )
    console.print(
        f"generalist on {stem}: mean level {payload['mean']:.3f} "
        f"({run.store.uri(baseline_eval_key(run.name, stem, args.replica))})"
    )
    return 0


# ---------------------------------------------------------------- distill


def cmd_distill(args: argparse.Namespace) -> int:
    from pec.evaluation.distill import distill_student, evaluate_student, student_eval_key

    if not 1 <= args.iterations <= 1_000_000:
        raise InputError(f"--iterations {args.iterations}: pass 1..1,000,000")
    if not 0 <= args.finetune_iterations <= 1_000_000:
        raise InputError(f"--finetune_iterations {args.finetune_iterations}: pass 0..1,000,000")
    run = open_run_from_args(args)
    state, _ = load_run_state(run)
    most = MAX_MUJOCO_ENVS if run.config.backend == "mujoco" else MAX_ENVS
    if args.num_envs is not None and not 1 <= args.num_envs <= most:
        raise InputError(
            f"--num_envs {args.num_envs}: pass 1..{most:,} environments ({run.config.backend})"
        )
    designs: list[Design] | None = None
    stem: str | None = None
    if args.designs_file:  # read before any training, so a bad file costs nothing
        protocol = _protocol(args, run.config)
        designs, stem = _designs(args.designs_file, run.space)
    runner = local_runner(run.config, log_for=lambda spec: distill_log)

    def on_stage(stage: int, total: int, info: dict[str, Any]) -> None:
        metrics = info.get("metrics") or {}
        console.print(
            f"stage {stage + 1}/{total} ({info['kind']}): {info['iterations']} iterations, "
            f"{_fmt(metrics.get('env_steps'), 0)} env steps, mean level "
            f"{_fmt(metrics.get('mean_level'), 2)} -> {info['checkpoint_uri']}"
        )

    record = distill_student(
        run,
        state,
        runner,
        iterations=args.iterations,
        finetune_iterations=args.finetune_iterations,
        num_envs=args.num_envs,
        router=args.router,
        learning_rate=args.learning_rate,
        exclude_stem=stem,
        on_stage=on_stage,
    )
    shares = ", ".join(f"{share:.2f}" for share in record["label_share"])
    console.print(
        f"student distilled from {len(record['teachers'])} expert(s) (labels by {args.router}: "
        f"{shares}): {record['env_steps']:.0f} env steps; checkpoint {record['checkpoint']}"
    )
    if designs is not None and stem is not None:
        payload = evaluate_student(
            run,
            state,
            designs,
            stem,
            runner,
            num_episodes=protocol.num_episodes,
            start_difficulty=protocol.start_difficulty,
            score=protocol.score,
        )
        console.print(
            f"student on {stem}: mean level {payload['mean']:.3f} "
            f"({run.store.uri(student_eval_key(run.name, stem))})"
        )
    return 0


def distill_log(line: str) -> None:
    log.info("distill: %s", line)


# ---------------------------------------------------------------- report


def _stem_arg(args: argparse.Namespace) -> str:
    if args.designs_stem:
        return str(args.designs_stem)
    if args.designs_file:
        return designs_stem(args.designs_file)
    raise InputError("report: pass --designs_file or --designs_stem (the final_eval/<stem> folder)")


def table_columns(table: Table) -> list[str]:
    return [str(column.header) for column in table.columns]


def cmd_report(args: argparse.Namespace) -> int:
    from pec.evaluation.comparison import comparison_numbers, comparison_rows, load_report_data
    from pec.presentation.report import write_report

    store, _ = open_run_store(args.store)
    run_name = validate_run_name(args.run_name)
    stem = _stem_arg(args)
    keys = write_report(store, run_name, stem)
    numbers = comparison_numbers(load_report_data(store, run_name, stem))
    table = Table(title=f"{run_name} on {stem}")
    for column in ("policy", "mean_level", "ci95", "over_baseline", "wins", "ties", "losses"):
        table.add_column(column)
    intervals = numbers.get("ci95") or {}
    for row in comparison_rows(numbers):
        interval = intervals.get(row["policy"])
        row = {**row, "ci95": None if interval is None else round(interval, 3)}
        table.add_row(*("-" if row[c] is None else str(row[c]) for c in table_columns(table)))
    console.print(table)
    for name, key in keys.items():
        console.print(f"{name}: {store.uri(key)}")
    return 0


# ---------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    from pec.evaluation.bundle_export import export_bundle

    store, _ = open_run_store(args.store)
    state = load_state_or_fail(store, args.run_name)
    manifest = export_bundle(
        store, state, Path(args.out), which=args.checkpoint, overwrite=args.overwrite
    )
    data = json.loads(manifest.read_text())
    console.print(
        f"bundle of {len(data['experts'])} expert(s) ({args.checkpoint} checkpoints) in "
        f"{manifest.parent}; obs {data['obs_dim']} -> actions {data['action_dim']}"
    )
    for expert in data["experts"]:
        checks = expert["verification"]
        console.print(
            f"  expert {expert['id']}: TorchScript max |diff| "
            f"{checks['torchscript_max_abs_diff']:.2e}, ONNX {checks['onnx_max_abs_diff']:.2e}"
        )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    store, _ = open_run_store(args.store)
    overviews = [
        run_overview(store, load_state_or_fail(store, name)) for name in (args.run_a, args.run_b)
    ]
    console.print(compare_table(overviews[0], overviews[1]))
    return 0


# ---------------------------------------------------------------- parser


def add_protocol_flags(p: argparse.ArgumentParser) -> None:
    """--score and the final_level settings of a final evaluation (pec.maths.protocols)."""
    p.add_argument(
        "--score",
        choices=SCORE_NAMES,
        help="evaluation protocol (default: the run's score); final_level is the original's",
    )
    p.add_argument(
        "--num_episodes", type=int, help="final_level only (default: the run's num_episodes)"
    )
    p.add_argument(
        "--start_difficulty",
        type=int,
        help="final_level only (default: the run's start_difficulty)",
    )


def add_final_commands(subparsers: Any) -> None:
    """Register this module's sub-commands on the main parser's subparsers."""
    p = subparsers.add_parser("eval-final", help="evaluate every expert on a designs file")
    add_common(p)
    p.add_argument(
        "--designs_file", required=True, help='JSON [{"id", "GCR", "spcf"(, "leg")}, ...]'
    )
    add_protocol_flags(p)
    p.set_defaults(func=cmd_eval_final)

    p = subparsers.add_parser("designs", help="write designs files")
    designs = p.add_subparsers(dest="designs_command", required=True)
    u = designs.add_parser("uniform", help="n uniform designs in the run's (or a given) box")
    u.add_argument("--n", type=int, required=True)
    u.add_argument("--seed", type=int, default=42)
    u.add_argument("--out", required=True, help="output .json file")
    u.add_argument("--run_name", "--run-name", help="take the design space from this run")
    u.add_argument("--store", default=default_store())
    u.add_argument("--GCR_range", type=pair)
    u.add_argument("--spcf_range", type=pair)
    u.add_argument("--leg_range", type=pair, help="leg length [lo, hi] (m): 3-D designs")
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
    add_protocol_flags(e)
    e.add_argument("--replica", type=int, default=0)
    e.set_defaults(func=cmd_baseline_eval)

    p = subparsers.add_parser(
        "distill", help="one student for the whole box, imitating the experts (DAgger)"
    )
    add_common(p)
    p.add_argument("--iterations", type=int, default=100, help="imitation rounds (rollouts)")
    p.add_argument(
        "--finetune_iterations", type=int, default=0, help="PPO iterations after it (0: none)"
    )
    p.add_argument("--num_envs", type=int, help="default: the run's num_envs")
    p.add_argument(
        "--router",
        choices=["score_informed", "nearest_centre"],
        default="score_informed",
        help="which expert labels each design",
    )
    p.add_argument("--learning_rate", type=float, default=3e-3, help="imitation's Adam step")
    p.add_argument(
        "--designs_file", help="then score the student on it (its scores never label designs)"
    )
    add_protocol_flags(p)
    p.set_defaults(func=cmd_distill)

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
    p.add_argument("--store", default=default_store())
    p.set_defaults(func=cmd_compare)
