"""The terminal: one rich console and the job progress bar (the `pec` command, `python -m flows`)."""

from __future__ import annotations

import re

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()
# Job progress lines look like "progress 12/300 mean_level=3 ..." (pec.jobs executors).
PROGRESS_LINE = re.compile(r"progress (\d+)/(\d+) ?(.*)")


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
