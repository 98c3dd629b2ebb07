"""Command lines for Isaac Lab's scripts and parsers of their stdout protocol.

Pure functions with no Isaac import, so the contract with the in-image scripts (argument
names, the `EXP_DIR:` and `FRONTIER_RESULTS:` lines) is unit-tested on any machine.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from pec.backends.base import EvalRequest, TrainRequest
from pec.backends.isaaclab.settings import USD_ENV_VAR, IsaacLabSettings
from pec.errors import ConfigError, InputError, JobError

EXP_DIR_PREFIX = "EXP_DIR:"
FRONTIER_PREFIX = "FRONTIER_RESULTS:"
_PROGRESS = re.compile(r"Learning iteration\s+(\d+)\s*/\s*(\d+)")
_MEAN_REWARD = re.compile(r"Mean reward:\s*([-+0-9.eE]+|nan|inf)")


@dataclass(frozen=True)
class LaunchCommand:
    """One subprocess to start: argv, the environment added to the parent's, working dir."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


def _script_path(settings: IsaacLabSettings, script: str) -> str:
    if PurePosixPath(script).is_absolute():
        return script
    return str(PurePosixPath(settings.isaaclab_dir) / script)


def _designs(gcr: np.ndarray, spcf: np.ndarray, what: str) -> int:
    if gcr.ndim != 1 or spcf.ndim != 1 or gcr.shape != spcf.shape or gcr.size == 0:
        raise InputError(
            f"{what}: gcr and spcf must be non-empty 1-D arrays of equal length "
            f"(got shapes {gcr.shape} and {spcf.shape})"
        )
    if not (np.all(np.isfinite(gcr)) and np.all(np.isfinite(spcf))):
        raise InputError(f"{what}: gcr/spcf contain NaN or inf; pass finite design values")
    return int(gcr.size)


def subprocess_env(settings: IsaacLabSettings) -> dict[str, str]:
    """Environment added for every Isaac Sim subprocess: the USD path comes from state."""
    if settings.usd_rel_path is None:
        raise ConfigError(
            "isaaclab settings: usd_rel_path is missing; the job must pass the state's "
            "usd_rel_path in the request settings"
        )
    env = dict(settings.env)
    env[USD_ENV_VAR] = settings.usd_rel_path
    return env


def build_train_command(
    request: TrainRequest,
    settings: IsaacLabSettings,
    gcr_file: Path,
    spcf_file: Path,
) -> LaunchCommand:
    """argv for train.py: one environment per sample, warm start only when a checkpoint exists."""
    num_envs = _designs(request.gcr, request.spcf, "train request")
    if request.max_iterations < 1:
        raise InputError(
            f"train request: max_iterations={request.max_iterations}; use a value >= 1"
        )
    if request.start_level < 0:
        raise InputError(f"train request: start_level (dl)={request.start_level}; use >= 0")
    argv = [
        *settings.launcher,
        _script_path(settings, settings.train_script),
        "--task",
        settings.task,
        "--num_envs",
        str(num_envs),
        "--seed",
        str(request.seed),
        "--max_iterations",
        str(request.max_iterations),
        "--device",
        request.device,
        "--experiment_name",
        settings.experiment_name,
        "--run_name",
        settings.run_name,
        "--GCR_samples_file",
        str(gcr_file),
        "--spcf_samples_file",
        str(spcf_file),
        "--dl",
        str(request.start_level),
    ]
    if request.resume_checkpoint is not None:
        argv += ["--resume_path", str(request.resume_checkpoint)]
    if settings.headless:
        argv.append("--headless")
    argv += settings.extra_train_args
    return LaunchCommand(argv=argv, env=subprocess_env(settings), cwd=request.work_dir)


def frontier_designs(request: EvalRequest) -> list[dict[str, float | int]]:
    """The designs file in the reference format: [{"id", "GCR", "spcf"}, ...]."""
    _designs(request.gcr, request.spcf, "eval request")
    return [
        {"id": i, "GCR": float(g), "spcf": float(s)}
        for i, (g, s) in enumerate(zip(request.gcr, request.spcf, strict=True))
    ]


def build_eval_command(
    request: EvalRequest,
    settings: IsaacLabSettings,
    frontier_file: Path,
    output_file: Path,
    work_dir: Path,
) -> LaunchCommand:
    """argv for the frontier evaluation script: every design is one parallel environment."""
    num_envs = _designs(request.gcr, request.spcf, "eval request")
    if request.num_episodes < 1:
        raise InputError(f"eval request: num_episodes={request.num_episodes}; use >= 1")
    if request.start_difficulty < 0:
        raise InputError(f"eval request: start_difficulty={request.start_difficulty}; use >= 0")
    argv = [
        *settings.launcher,
        _script_path(settings, settings.eval_script),
        "--task",
        settings.task,
        "--num_envs",
        str(num_envs),
        "--checkpoint_path",
        str(request.checkpoint),
        "--frontier_file",
        str(frontier_file),
        "--output",
        str(output_file),
        "--num_episodes",
        str(request.num_episodes),
        "--start_difficulty",
        str(request.start_difficulty),
        "--seed",
        str(request.seed),
        "--device",
        request.device,
    ]
    if settings.headless:
        argv.append("--headless")
    argv += settings.extra_eval_args
    return LaunchCommand(argv=argv, env=subprocess_env(settings), cwd=work_dir)


def parse_exp_dir(lines: Iterable[str]) -> Path | None:
    """The experiment folder train.py announced (last announcement wins), or None."""
    found: Path | None = None
    for line in lines:
        text = line.strip()
        if not text.startswith(EXP_DIR_PREFIX):
            continue
        value = text[len(EXP_DIR_PREFIX) :].strip()
        if not value:
            raise JobError(
                f"train.py printed {EXP_DIR_PREFIX!r} without a path; fix the train script"
            )
        found = Path(value)
    return found


def _level(item: object, index: int) -> int:
    value = item.get("final_level") if isinstance(item, dict) else item
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JobError(
            f"{FRONTIER_PREFIX} entry {index} is {item!r}; expected a number or "
            "{'final_level': n}; fix the eval script output"
        )
    if not math.isfinite(value) or value != int(value) or value < 0:
        raise JobError(
            f"{FRONTIER_PREFIX} entry {index} is {value!r}; expected a non-negative "
            "integer level; fix the eval script output"
        )
    return int(value)


def parse_frontier_results(lines: Iterable[str], n_designs: int) -> list[int]:
    """Final curriculum level per design from the last `FRONTIER_RESULTS:` line."""
    payload: str | None = None
    for line in lines:
        text = line.strip()
        if text.startswith(FRONTIER_PREFIX):
            payload = text[len(FRONTIER_PREFIX) :].strip()
    if payload is None:
        raise JobError(
            f"the eval script never printed {FRONTIER_PREFIX}; see its log for the crash"
        )
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise JobError(
            f"{FRONTIER_PREFIX} is not valid JSON ({exc.msg}); fix the eval script output"
        ) from exc
    if not isinstance(data, list):
        raise JobError(f"{FRONTIER_PREFIX} must be a JSON list, got {type(data).__name__}")
    if len(data) != n_designs:
        raise JobError(
            f"{FRONTIER_PREFIX} has {len(data)} entries for {n_designs} designs; "
            "the eval script must report one level per design"
        )
    return [_level(item, i) for i, item in enumerate(data)]


def parse_progress(line: str) -> tuple[int, int] | None:
    """(iteration, total) from rsl_rl's 'Learning iteration i/n' banner, else None."""
    match = _PROGRESS.search(line)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def parse_mean_reward(line: str) -> float | None:
    """rsl_rl's 'Mean reward: x' console line, else None."""
    match = _MEAN_REWARD.search(line)
    return None if match is None else float(match.group(1))


def find_checkpoints(exp_dir: Path) -> tuple[Path, Path]:
    """(best, last) checkpoint in an rsl_rl experiment folder.

    The BALLU train.py keeps `model_best.pt`; rsl_rl writes `model_<iteration>.pt`. Without
    a best file the last one stands in for it.
    """
    numbered: list[tuple[int, Path]] = []
    for path in exp_dir.glob("model_*.pt"):
        suffix = path.stem[len("model_") :]
        if suffix.isdigit():
            numbered.append((int(suffix), path))
    best = exp_dir / "model_best.pt"
    if numbered:
        last = max(numbered)[1]
    elif best.is_file():
        last = best
    else:
        raise JobError(
            f"no checkpoint (model_best.pt / model_<N>.pt) in {exp_dir}; "
            "training stopped before its first save"
        )
    return (best if best.is_file() else last), last
