"""Isaac Lab backend: runs Isaac Lab's scripts as subprocesses inside the GPU image.

Isaac Sim owns its process (app launcher, CUDA context, Kit extensions), so training and
evaluation run as child processes and talk back through stdout lines; this module never
imports isaaclab or isaacsim.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pec.backends.base import (
    CheckpointCallback,
    EvalRequest,
    ProgressCallback,
    TrainOutcome,
    TrainRequest,
)
from pec.backends.isaaclab.args import (
    LaunchCommand,
    build_eval_command,
    build_train_command,
    find_checkpoints,
    frontier_designs,
    parse_exp_dir,
    parse_frontier_results,
    parse_mean_reward,
    parse_progress,
)
from pec.backends.isaaclab.settings import IsaacLabSettings, load_settings
from pec.errors import JobError

log = logging.getLogger(__name__)

# Called with each stdout line as it arrives.
LineCallback = Callable[[str], None]


@dataclass
class ProcessResult:
    returncode: int
    lines: list[str]
    timed_out: bool


@dataclass
class _LineWatcher:
    """Turns training stdout into progress callbacks while the process runs."""

    on_progress: ProgressCallback | None
    last_iteration: int = -1
    total: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    def __call__(self, line: str) -> None:
        reward = parse_mean_reward(line)
        if reward is not None:
            self.metrics["mean_reward"] = reward
        progress = parse_progress(line)
        if progress is None:
            return
        if self.last_iteration >= 0 and self.on_progress is not None:
            self.on_progress(self.last_iteration, self.total, dict(self.metrics))
        self.last_iteration, self.total = progress


def run_logged(
    command: LaunchCommand,
    log_file: Path,
    timeout_s: float | None,
    on_line: LineCallback | None = None,
) -> ProcessResult:
    """Run, tee stdout+stderr to `log_file` and the logger, kill at the timeout."""
    log.info("starting: %s (cwd %s)", " ".join(command.argv), command.cwd)
    command.cwd.mkdir(parents=True, exist_ok=True)
    timed_out = threading.Event()
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            command.argv,
            cwd=command.cwd,
            env={**os.environ, **command.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
    except OSError as exc:
        raise JobError(
            f"cannot start {command.argv[0]!r}: {exc}; check the isaaclab launcher setting "
            "(this backend runs only inside the GPU image)"
        ) from exc

    def _kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout_s, _kill) if timeout_s is not None else None
    if timer is not None:
        timer.start()
    try:
        assert proc.stdout is not None
        with log_file.open("w", encoding="utf-8") as sink:
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                lines.append(line)
                sink.write(raw)
                log.debug("%s", line)
                if on_line is not None:
                    on_line(line)
        returncode = proc.wait()
    finally:
        if timer is not None:
            timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return ProcessResult(returncode=returncode, lines=lines, timed_out=timed_out.is_set())


class IsaacLabBackend:
    """The `Backend` contract on Isaac Lab: train.py for PPO, the frontier script for eval."""

    name = "isaaclab"

    def __init__(self, settings: IsaacLabSettings | None = None) -> None:
        self.settings = settings or IsaacLabSettings()

    def train(
        self,
        request: TrainRequest,
        on_progress: ProgressCallback | None = None,
        on_checkpoint: CheckpointCallback | None = None,
    ) -> TrainOutcome:
        settings = load_settings(self.settings, request.settings)
        samples = request.work_dir / "samples"
        samples.mkdir(parents=True, exist_ok=True)
        gcr_file, spcf_file = samples / "gcr.npy", samples / "spcf.npy"
        command = build_train_command(request, settings, gcr_file, spcf_file)
        np.save(gcr_file, np.asarray(request.gcr, dtype=np.float64))
        np.save(spcf_file, np.asarray(request.spcf, dtype=np.float64))
        watcher = _LineWatcher(on_progress)
        result = run_logged(command, request.work_dir / "train.log", settings.timeout_s, watcher)
        exp_dir = parse_exp_dir(result.lines)
        failed = result.returncode != 0 or result.timed_out
        if exp_dir is None:
            # Crash before logging started: nothing to keep; the flow falls back.
            raise JobError(
                f"train.py exited with {result.returncode} without printing EXP_DIR: "
                f"(timed out: {result.timed_out}); see {request.work_dir / 'train.log'}"
            )
        if not exp_dir.is_absolute():
            exp_dir = command.cwd / exp_dir
        best, last = find_checkpoints(exp_dir)
        if failed:
            log.warning(
                "train.py exited with %s after writing checkpoints in %s; keeping %s",
                result.returncode,
                exp_dir,
                best.name,
            )
        elif watcher.last_iteration >= 0 and on_progress is not None:
            on_progress(watcher.last_iteration, watcher.total, dict(watcher.metrics))
        if on_checkpoint is not None:
            for path in dict.fromkeys([last, best]):
                on_checkpoint(path)
        metrics = dict(watcher.metrics)
        metrics["iterations"] = float(watcher.last_iteration + 1)
        metrics["crashed"] = 1.0 if failed else 0.0
        return TrainOutcome(best_checkpoint=best, last_checkpoint=last, metrics=metrics)

    def evaluate(self, request: EvalRequest) -> list[int]:
        settings = load_settings(self.settings, request.settings)
        work_dir = request.checkpoint.parent / f"eval_seed{request.seed}"
        work_dir.mkdir(parents=True, exist_ok=True)
        frontier_file, output_file = work_dir / "frontier.json", work_dir / "results.json"
        command = build_eval_command(request, settings, frontier_file, output_file, work_dir)
        frontier_file.write_text(json.dumps(frontier_designs(request)), encoding="utf-8")
        result = run_logged(command, work_dir / "eval.log", settings.timeout_s)
        if result.returncode != 0 or result.timed_out:
            raise JobError(
                f"frontier evaluation exited with {result.returncode} "
                f"(timed out: {result.timed_out}); see {work_dir / 'eval.log'}"
            )
        return parse_frontier_results(result.lines, int(request.gcr.size))
