"""The contract every simulator backend fulfils, on local files only.

The job layer (`pec.jobs`) moves data between the store and a local work directory, so a
backend never sees store URIs, credentials or Prefect: it reads and writes plain paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from pec.runs.job_records import AUTO_DEVICE as AUTO_DEVICE


@dataclass(frozen=True)
class TrainRequest:
    """One expert's PPO training run on per-environment designs."""

    gcr: np.ndarray  # (num_envs,) float, one GCR per environment
    spcf: np.ndarray  # (num_envs,) float, one spring coefficient per environment
    start_level: int  # `dl`: obstacle level every environment starts at
    max_iterations: int  # PPO iterations
    seed: int
    device: str  # "cpu", "cuda:0", ... (resolved: never "auto")
    work_dir: Path  # checkpoints and TensorBoard logs are written below here
    resume_checkpoint: Path | None = None  # warm start (model, optimiser, normaliser)
    settings: dict[str, object] = field(default_factory=dict)  # backend-specific overrides
    # True when resume_checkpoint is this job's own model_last.pt left by an interrupted
    # attempt (not a warm start): the job goes on, its first iteration stays where it was
    continues_job: bool = False


@dataclass(frozen=True)
class TrainOutcome:
    best_checkpoint: Path  # policy at the PPO iteration with the highest mean level
    last_checkpoint: Path
    metrics: dict[str, float]  # e.g. mean_reward, mean_level, best_mean_level, iterations


@dataclass(frozen=True)
class EvalRequest:
    """One checkpoint on a list of designs, one environment per design."""

    checkpoint: Path
    gcr: np.ndarray  # (n_designs,)
    spcf: np.ndarray  # (n_designs,)
    num_episodes: int
    start_difficulty: int
    seed: int
    device: str
    settings: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeRequest:
    """One episode per environment, each at its own obstacle level: did the robot pass?

    The primitive behind evaluation protocols that search over levels: a backend runs one
    deterministic episode per design at `levels[i]` and reports, per design, whether the
    curriculum's level-up condition (root x past `promote_x`) held at the episode's end.
    Backends expose it as `probe_levels(request) -> list[bool]`, in input order.
    """

    checkpoint: Path
    gcr: np.ndarray  # (n,)
    spcf: np.ndarray  # (n,)
    levels: np.ndarray  # (n,) int in [0, 74]: the single episode's obstacle level per design
    seed: int
    device: str
    settings: dict[str, object] = field(default_factory=dict)


def resolve_device(device: str) -> str:
    """`auto` becomes `cuda:0` where torch sees CUDA on this machine, else `cpu`.

    Called by the job layer on the machine that runs the job (a worker, a container), never
    where the run is configured; explicit devices are returned unchanged.
    """
    if device != AUTO_DEVICE:
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


# Called with (iteration, max_iterations, metrics) after every PPO iteration.
ProgressCallback = Callable[[int, int, dict[str, float]], None]
# Called with the path of every checkpoint file as soon as it is complete on disk.
CheckpointCallback = Callable[[Path], None]


class Backend(Protocol):
    name: str

    def train(
        self,
        request: TrainRequest,
        on_progress: ProgressCallback | None = None,
        on_checkpoint: CheckpointCallback | None = None,
    ) -> TrainOutcome:
        """Train; raise on failure. Checkpoints already reported via on_checkpoint survive."""
        ...

    def evaluate(self, request: EvalRequest) -> list[int]:
        """Final curriculum level (integer in [0, 74]) per design, in input order."""
        ...

    def check_host(self, settings: dict[str, object], device: str) -> None:
        """The backend's preflight on the machine that will run its jobs: raise a one-line
        ConfigError when something these settings and this device need is missing here (an
        optional extra, CUDA). A run whose jobs run on this machine calls it before writing."""
        ...
