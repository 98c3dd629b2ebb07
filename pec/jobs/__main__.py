"""`python -m pec.jobs SPEC_JSON_PATH [--result RESULT_PATH]`: one job, one process.

This is what every out-of-process executor runs (subprocess, container, remote worker).
Progress goes to stdout line by line; the last line is ``PEC_JOB_RESULT <json>`` so a
caller that only sees the output stream still gets the result. Exit codes: 0 success
(possibly with a warning), 1 the job failed and said why (its verdict is final), 2 the
spec is invalid, 3 an unexpected crash (the caller may still recover an uploaded checkpoint). SIGTERM becomes an
exception inside the job, so a checkpoint uploaded before the kill is still reported.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from pec.errors import MESSAGE_LIMIT, ConfigError, IncompleteTrainingError, PECError, one_line
from pec.jobs.run import run_job
from pec.jobs.spec import (
    EXIT_BAD_SPEC,
    EXIT_CRASHED,
    EXIT_INCOMPLETE,
    EXIT_JOB_FAILED,
    EXIT_OK,
    parse_job_spec,
)

RESULT_MARKER = "PEC_JOB_RESULT"

logger = logging.getLogger("pec.jobs")


class JobTerminated(Exception):
    """Raised in the job's thread when the process receives SIGTERM."""


_terminated: list[int] = []  # the SIGTERM received, if any


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills outright
    _terminated.append(signum)
    raise JobTerminated(f"received signal {signum} (SIGTERM)")


def _progress(iteration: int, max_iterations: int, metrics: dict[str, float]) -> None:
    from pec.jobs.executors import worth_reporting

    if _terminated:  # the handler's own raise was swallowed (e.g. inside a logging call)
        raise JobTerminated(f"received signal {_terminated[0]} (SIGTERM)")

    if not worth_reporting(iteration, max_iterations):
        return
    shown = " ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items()))
    logger.info("progress %d/%d %s", iteration, max_iterations, shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pec.jobs", description=__doc__)
    parser.add_argument("spec", type=Path, help="job spec JSON file")
    parser.add_argument("--result", type=Path, default=None, help="write the result JSON here")
    args = parser.parse_args(argv)

    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )

    try:
        spec = parse_job_spec(args.spec.read_bytes())
    except OSError as exc:
        print(f"error: cannot read job spec {args.spec}: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_SPEC
    except ConfigError as exc:
        print(f"error: {one_line(exc, MESSAGE_LIMIT)}", file=sys.stderr)
        return EXIT_BAD_SPEC

    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        result = run_job(spec, on_progress=_progress)
    except JobTerminated as exc:
        print(
            f"error: job terminated before it produced a result: {one_line(exc)}", file=sys.stderr
        )
        return EXIT_JOB_FAILED
    except IncompleteTrainingError as exc:
        print(f"error: {one_line(exc, MESSAGE_LIMIT)}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except PECError as exc:
        print(f"error: {one_line(exc, MESSAGE_LIMIT)}", file=sys.stderr)
        return EXIT_JOB_FAILED
    except Exception:
        logger.exception("job crashed unexpectedly")
        return EXIT_CRASHED
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    payload = json.dumps(result.model_dump(mode="json"))
    if args.result is not None:
        args.result.write_text(payload)
    print(f"{RESULT_MARKER} {payload}", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
