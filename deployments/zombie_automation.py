"""Mark silent flow runs Crashed, which a self-hosted server does not do on its own.

A flow run whose process died (OOM-killed container, lost GPU host) stays Running forever
and holds its concurrency slot.  Running flows emit a heartbeat every
PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds; this automation fires when a run that sent one
sends nothing (heartbeat or final state) for `--missed` periods, and sets it Crashed so it
can be retried and its slot is released.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import cast

from _server import connect
from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture

NAME = "pec-crash-zombie-flow-runs"


def build(heartbeat_s: int, missed: int) -> Automation:
    return Automation(
        name=NAME,
        description=f"Crash flow runs silent for {missed} heartbeats of {heartbeat_s} s.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=heartbeat_s * missed),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                name=None,
                force=False,
                message=f"No heartbeat for {heartbeat_s * missed} s: the run's process died.",
            )
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--heartbeat-s",
        type=int,
        default=180,
        help="PREFECT_FLOWS_HEARTBEAT_FREQUENCY of the runs (default 180, min 30)",
    )
    parser.add_argument("--missed", type=int, default=3, help="silent periods before Crashed")
    args = parser.parse_args(argv)
    if args.heartbeat_s < 30 or args.missed < 2:
        sys.exit("error: use --heartbeat-s >= 30 and --missed >= 2 (fewer crashes live runs)")
    connect().__exit__(None, None, None)
    automation = build(args.heartbeat_s, args.missed)
    try:
        existing = cast(Automation, Automation.read(name=NAME))
    except ValueError:
        existing = None
    if existing is not None:
        automation.id = existing.id
        automation.update()
        print(f"updated automation {NAME} ({existing.id})")
    else:
        created = cast(Automation, automation.create())
        print(f"created automation {NAME} ({created.id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
