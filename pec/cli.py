"""The `pec` command: one sub-command per step of the reference sheet's script table.

Every mutating command validates all of its input before it writes anything, records the
effective config in the run, and turns any PECError into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pec import layout, steps
from pec.config import PECConfig, build_config, load_config, parse_override
from pec.errors import ConfigError, InputError, PECError, StateError
from pec.jobs.run import prefix_uri
from pec.jobs.spec import EvalJobResult, StoreSpec, TrainJobResult
from pec.routing import route
from pec.state import PECState
from pec.steps import state_space
from pec.store import S3Settings, Store, open_store

console = Console()
# Job progress lines look like "progress 12/300 mean_level=3 ..." (pec.jobs executors).
PROGRESS_LINE = re.compile(r"progress (\d+)/(\d+) ?(.*)")
DEFAULT_STORE = "runs"


# ---------------------------------------------------------------- shared plumbing


def open_run_store(location: str) -> tuple[Store, StoreSpec]:
    endpoint = os.environ.get("PEC_S3_ENDPOINT_URL") or None
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None
    if location.startswith("s3://"):
        store = open_store(location, S3Settings(endpoint_url=endpoint, region=region))
        return store, StoreSpec(location=location, endpoint_url=endpoint, region=region)
    store = open_store(location)
    return store, StoreSpec(location=store.root_uri)


def _overrides(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in getattr(args, "set", None) or []:
        key, value = parse_override(item)
        values[key] = value
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return values


def resolve_config(
    store: Store, run_name: str, config_path: str | None, overrides: dict[str, Any]
) -> PECConfig:
    """--config file if given, else the run's recorded pec_config.yaml, else defaults; then overrides."""
    if config_path is not None:
        return load_config(config_path, overrides)
    recorded = steps.read_run_config(store, run_name)
    base = recorded.model_dump(mode="json") if recorded is not None else {}
    return build_config(base, overrides, source="config")


def open_run(args: argparse.Namespace, config_keys: Sequence[str] = ()) -> steps.Run:
    store, spec = open_run_store(args.store)
    overrides = _overrides(args, config_keys)
    from pec.run_names import validate_run_name

    run_name = validate_run_name(args.run_name)
    config = resolve_config(store, run_name, args.config, overrides)
    return steps.make_run(store, spec, run_name, config)


def _executor(config: PECConfig) -> Any:
    from pec.jobs.executors import make_executor

    if config.executor == "deployment":
        raise ConfigError(
            "executor: 'deployment' runs experts through Prefect; use the flow "
            "(`prefect deployment run pec/main`) or pick inprocess/subprocess/docker for the CLI"
        )
    if config.executor == "docker":
        return make_executor("docker", **config.docker_options())
    return make_executor(config.executor)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


# ---------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace) -> int:
    run = open_run(args, ["K", "GCR_range", "spcf_range", "sigma_scale", "centers", "usd_rel_path"])
    state, _, created = steps.initialise_run(run)
    steps.write_effective_config(run)
    from pec.visualize import render_all_soft

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
    run = open_run(args, ["max_iterations", "num_envs"])
    state, version = steps.load_run_state(run)
    k = args.expert_id
    if not 0 <= k < len(state.experts):
        raise InputError(f"--expert_id {k}: the run has experts 0..{len(state.experts) - 1}")
    if args.dl is not None and not 0 <= args.dl <= 74:
        raise InputError(f"--dl {args.dl}: the obstacle level must be in 0..74")
    executor = _executor(run.config)
    steps.write_effective_config(run)
    spec = steps.prepare_training(run, state, k)
    if args.dl is not None:
        spec = spec.model_copy(update={"start_level": args.dl})
    if args.max_iterations is not None:
        spec = spec.model_copy(update={"max_iterations": args.max_iterations})
    outcome: steps.TrainingOutcome
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

        try:
            result = executor.execute(spec, log=on_line)
            assert isinstance(result, TrainJobResult)
            steps.record_train_result(run, spec, result)
            outcome = steps.TrainingOutcome(k, result)
        except PECError as exc:
            outcome = steps.TrainingOutcome(k, None, str(exc))
    new_state, _, missing = steps.commit_training(run, state, version, [outcome])
    expert = new_state.experts[k]
    if outcome.result is not None:
        console.print(f"expert {k} trained: {expert.checkpoint}")
        for name, value in sorted(outcome.result.metrics.items()):
            console.print(f"  {name}: {value:.4g}")
        if outcome.result.warning:
            console.print(f"[yellow]warning:[/] {outcome.result.warning}")
        return 0
    if missing:
        raise StateError(f"expert {k} failed and has no previous checkpoint: {outcome.error}")
    console.print(
        f"[yellow]expert {k} failed; falls back to {expert.checkpoint}[/]: {outcome.error}"
    )
    return 0


def cmd_frontier(args: argparse.Namespace) -> int:
    run = open_run(args, ["F", "sampling_mode"])
    state, _ = steps.load_run_state(run)
    steps.write_effective_config(run)
    selection = steps.frontier_candidates(run, state)
    console.print(
        f"{len(selection.designs)} candidates ({selection.mode}, {selection.band_count} from the band): "
        f"{run.store.uri(layout.candidates_key(run.name, state.iteration))}"
    )
    return 0


def cmd_evaluate_frontier(args: argparse.Namespace) -> int:
    run = open_run(args, ["F", "sampling_mode", "num_episodes", "start_difficulty"])
    state, _ = steps.load_run_state(run)
    executor = _executor(run.config)
    steps.write_effective_config(run)
    selection = steps.frontier_candidates(run, state)
    levels: dict[int, list[int] | None] = {}
    with progress_bar() as progress:
        bar = progress.add_task("frontier", total=len(state.experts), info="")
        for k in range(len(state.experts)):
            spec = steps.prepare_evaluation(run, state, k, selection.designs)
            if spec is None:
                levels[k] = None
                progress.console.print(f"expert {k}: no checkpoint, not evaluated")
            else:
                result = executor.execute(spec)
                assert isinstance(result, EvalJobResult)
                levels[k] = result.levels
                progress.update(bar, info=f"expert {k} mean {np.mean(result.levels):.1f}")
            progress.advance(bar)
    steps.write_scores(run, state, selection, levels)
    console.print(f"scores: {run.store.uri(layout.scores_key(run.name, state.iteration))}")
    return 0


def _read_scores_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"--scores '{path}' does not exist") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"--scores '{path}' is not valid JSON (line {exc.lineno}); fix the file"
        ) from None
    if isinstance(data, list):
        data = {"scores": data}
    if not isinstance(data, dict) or "scores" not in data:
        raise InputError(
            f"--scores '{path}': expected {{\"scores\": [[...K rows of F numbers...]]}} or a list of rows"
        )
    return data


def cmd_refit(args: argparse.Namespace) -> int:
    run = open_run(args, ["min_var_scale", "min_designs"])
    state, version = steps.load_run_state(run)
    scores: dict[str, Any] | None = None
    if args.scores is not None:
        scores = _read_scores_file(Path(args.scores))
        candidates = steps.read_candidates(run, state.iteration)
        steps.score_matrix(scores, len(state.experts), len(candidates))  # validate before writing
    steps.write_effective_config(run)
    if scores is not None:
        from pec.frontier import CandidateSelection

        candidates = steps.read_candidates(run, state.iteration)
        selection = CandidateSelection(
            designs=candidates,
            max_log_density=np.zeros(len(candidates)),
            mode="manual",
            band_count=0,
            pool_size=len(candidates),
        )
        rows = scores["scores"]
        steps.write_scores(run, state, selection, {k: rows[k] for k in range(len(rows))})
    new_state, _ = steps.refit_iteration(run, state, version)
    console.print(
        f"refit of iteration {state.iteration} done; coverage {steps.latest_coverage(new_state):.3f}"
    )
    _experts_table(new_state)
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    store, _ = open_run_store(args.store)
    from pec.run_names import validate_run_name
    from pec.state_io import load_state
    from pec.visualize import render_coverage, render_initial, render_iteration

    run_name = validate_run_name(args.run_name)
    loaded = load_state(store, run_name)
    if loaded is None:
        raise StateError(
            f"run '{run_name}' has no pec_state.json in {store.root_uri}; run `pec init` first"
        )
    state = loaded[0]
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
    from pec.designs_file import read_designs_file
    from pec.run_names import validate_run_name
    from pec.state_io import load_state

    run_name = validate_run_name(args.run_name)
    loaded = load_state(store, run_name)
    if loaded is None:
        raise StateError(f"run '{run_name}' has no pec_state.json in {store.root_uri}")
    state = loaded[0]
    space = state_space(state)
    if args.designs_file:
        designs = read_designs_file(Path(args.designs_file))
        points = np.asarray([[d.GCR, d.spcf] for d in designs], dtype=float)
        ids = [d.id for d in designs]
    elif args.GCR is not None and args.spcf is not None:
        points = np.asarray([[args.GCR, args.spcf]], dtype=float)
        ids = [0]
    else:
        raise InputError("route: pass --GCR and --spcf, or --designs_file")
    experts = route(points, state.expert_mus(), space)
    table = Table("design", "GCR", "spcf", "expert", "checkpoint")
    for i, (p, k) in enumerate(zip(points, experts, strict=True)):
        table.add_row(
            str(ids[i]),
            f"{p[0]:.4f}",
            f"{p[1]:.5f}",
            str(int(k)),
            str(state.experts[int(k)].checkpoint),
        )
    console.print(table)
    return 0


def _experts_table(state: PECState) -> None:
    table = Table(title=f"{state.run_name}: {state.iteration} completed iteration(s)")
    for col in (
        "expert",
        "mu GCR",
        "mu spcf",
        "std GCR",
        "std spcf",
        "designs",
        "last trained",
        "checkpoint",
    ):
        table.add_column(col)
    for e in state.experts:
        table.add_row(
            str(e.id),
            f"{e.mu[0]:.4f}",
            f"{e.mu[1]:.5f}",
            f"{e.sigma[0][0] ** 0.5:.4f}",
            f"{e.sigma[1][1] ** 0.5:.5f}",
            str(len(e.designs)),
            "-" if e.last_trained_pec_iter is None else str(e.last_trained_pec_iter),
            e.checkpoint or "-",
        )
    console.print(table)


def cmd_status(args: argparse.Namespace) -> int:
    store, _ = open_run_store(args.store)
    from pec.run_names import validate_run_name
    from pec.state_io import load_state

    run_name = validate_run_name(args.run_name)
    loaded = load_state(store, run_name)
    if loaded is None:
        raise StateError(
            f"run '{run_name}' has no pec_state.json in {store.root_uri}; run `pec init` first"
        )
    state = loaded[0]
    _experts_table(state)
    from pec.cli_final import status_history_table

    console.print(status_history_table(store, state))
    cov = Table(title="coverage per iteration")
    cov.add_column("iteration")
    cov.add_column("coverage after refit")
    cov.add_row("init", f"{state.init_realized_coverage:.3f}")
    for record in state.coverage:
        cov.add_row(str(record.iteration), f"{record.coverage:.3f}")
    console.print(cov)
    failures = [(e.id, f) for e in state.experts for f in e.failures]
    if failures:
        fail = Table(title="failures")
        for col in ("expert", "iteration", "fallback", "message"):
            fail.add_column(col)
        for k, f in failures:
            fail.add_row(str(k), str(f.iteration), f.fallback_checkpoint or "-", f.message[:120])
        console.print(fail)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pec.local_loop import IterationReport, run_until_done

    run = open_run(args, ["K", "max_pec_iterations", "max_iterations", "max_iterations_iter0"])
    executor = _executor(run.config)

    def report(r: IterationReport) -> None:
        cov = "-" if r.coverage is None else f"{r.coverage:.3f}"
        console.print(
            f"iteration {r.iteration}: trained {r.trained}, reused {r.reused}, "
            f"failed {sorted(r.failed)}, coverage {cov}"
            + (f" -> stop: {r.stop_reason}" if r.stop_reason else "")
        )

    state = run_until_done(run, executor, on_iteration=report)
    console.print(
        f"run [bold]{run.name}[/] finished after {state.iteration} iteration(s); "
        f"results in {prefix_uri(run.store, layout.run_prefix(run.name))}"
    )
    return 0


# ---------------------------------------------------------------- parser


def _add_common(p: argparse.ArgumentParser, *, config: bool = True) -> None:
    p.add_argument(
        "--run_name", "--run-name", required=True, help="name of the run (folder under the store)"
    )
    p.add_argument(
        "--store",
        default=os.environ.get("PEC_STORE", DEFAULT_STORE),
        help="a folder or s3://bucket/prefix (default: $PEC_STORE or ./runs)",
    )
    if config:
        p.add_argument(
            "--config", help="YAML config file (default: the run's recorded pec_config.yaml)"
        )
        p.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override any config key (repeatable)",
        )


def _pair(text: str) -> tuple[float, float]:
    try:
        values = (
            json.loads(text)
            if text.strip().startswith("[")
            else [float(v) for v in text.split(",")]
        )
    except (ValueError, json.JSONDecodeError):
        raise argparse.ArgumentTypeError(f"'{text}' is not a pair like 0.75,0.89") from None
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"'{text}' must hold exactly two numbers")
    return float(values[0]), float(values[1])


def _centers(text: str) -> list[tuple[float, float]]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(
            f"--centers '{text}' is not JSON like [[0.8,0.004],[0.85,0.008]]"
        ) from None
    if not isinstance(values, list) or not all(isinstance(v, list) and len(v) == 2 for v in values):
        raise argparse.ArgumentTypeError("--centers must be a JSON list of [GCR, spcf] pairs")
    return [(float(a), float(b)) for a, b in values]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pec", description="Progressive Expert Coverage")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="seed K Gaussians and write pec_state.json")
    _add_common(p)
    p.add_argument("--K", type=int)
    p.add_argument("--GCR_range", type=_pair)
    p.add_argument("--spcf_range", type=_pair)
    p.add_argument("--sigma_scale", type=float)
    p.add_argument("--centers", type=_centers)
    p.add_argument("--usd_rel_path")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("train-expert", help="train one expert for the current iteration")
    _add_common(p)
    p.add_argument("--expert_id", type=int, required=True)
    p.add_argument("--max_iterations", type=int)
    p.add_argument("--num_envs", type=int)
    p.add_argument("--dl", type=int, help="starting obstacle level (default: dl auto-scaling)")
    p.set_defaults(func=cmd_train_expert)

    p = sub.add_parser("frontier", help="write this iteration's frontier candidates only")
    _add_common(p)
    p.add_argument("--F", type=int)
    p.add_argument("--sampling_mode", choices=["auto", "border", "frontier"])
    p.set_defaults(func=cmd_frontier)

    p = sub.add_parser("evaluate-frontier", help="evaluate every expert on F frontier candidates")
    _add_common(p)
    p.add_argument("--F", type=int)
    p.add_argument("--sampling_mode", choices=["auto", "border", "frontier"])
    p.add_argument("--num_episodes", type=int)
    p.add_argument("--start_difficulty", type=int)
    p.set_defaults(func=cmd_evaluate_frontier)

    p = sub.add_parser("refit", help="assign the frontier to winners and refit the Gaussians")
    _add_common(p)
    p.add_argument("--min_var_scale", type=float)
    p.add_argument("--min_designs", type=int)
    p.add_argument(
        "--scores",
        help="hand-written scores JSON (K rows of F levels) for this iteration's candidates",
    )
    p.set_defaults(func=cmd_refit)

    p = sub.add_parser("visualize", help="write the run's plots into the store")
    _add_common(p, config=False)
    p.add_argument("--itr", type=int, help="draw iteration N from history[N]")
    p.add_argument("--no_frontier", action="store_true")
    p.set_defaults(func=cmd_visualize)

    p = sub.add_parser("route", help="nearest-centre routing of designs to experts")
    _add_common(p, config=False)
    p.add_argument("--GCR", type=float)
    p.add_argument("--spcf", type=float)
    p.add_argument("--designs_file")
    p.set_defaults(func=cmd_route)

    p = sub.add_parser("status", help="experts, coverage per iteration and failures of a run")
    _add_common(p, config=False)
    p.set_defaults(func=cmd_status)

    from pec.cli_final import add_final_commands

    add_final_commands(sub)

    p = sub.add_parser("run", help="run PEC iterations in this process without Prefect")
    _add_common(p)
    p.add_argument("--K", type=int)
    p.add_argument("--max_pec_iterations", type=int)
    p.add_argument("--max_iterations", type=int)
    p.add_argument("--max_iterations_iter0", type=int)
    p.set_defaults(func=cmd_run)
    return parser


class _ArgumentError(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def fail(message: str) -> None:
        raise _ArgumentError(message)

    def patch(p: argparse.ArgumentParser) -> None:
        p.error = fail  # type: ignore[method-assign, assignment]
        for action in p._actions:  # noqa: SLF001
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                for child in action.choices.values():
                    patch(child)

    patch(parser)
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        print(f"pec: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except PECError as exc:
        print(f"pec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
