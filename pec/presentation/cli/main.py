"""The `pec` command: its parser and `main`, which turns any PECError into one line and exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from pec.errors import MESSAGE_LIMIT, PECError, one_line
from pec.presentation.cli.final_commands import add_final_commands
from pec.presentation.cli.run_commands import add_run_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pec", description="Progressive Expert Coverage")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_commands(sub)
    add_final_commands(sub)
    return parser


class _ArgumentError(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def fail(message: str) -> None:
        raise _ArgumentError(message)

    def patch(p: argparse.ArgumentParser) -> None:
        p.error = fail  # type: ignore[method-assign, assignment]
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
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
    # Warnings raised on the way to an error (numpy's overflow on a broken input, say) are
    # symptoms of that error: the one line says what to fix. After success they are logged.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            code = func(args)
        except PECError as exc:
            print(f"pec: error: {one_line(exc, MESSAGE_LIMIT)}", file=sys.stderr)
            return 2
    for warning in caught:
        logging.getLogger("pec").warning(
            "%s (%s:%d)", warning.message, Path(warning.filename).name, warning.lineno
        )
    return code
