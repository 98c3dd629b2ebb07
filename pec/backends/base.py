"""The contract every simulator backend fulfils, on local files only.

The job layer (`pec.jobs`) moves data between the store and a local work directory, so a
backend never sees store URIs, credentials or Prefect: it reads and writes plain paths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from pec.errors import ConfigError, InputError
from pec.maths.design_space import AXES, DEFAULT_AXES
from pec.runs.job_records import AUTO_DEVICE as AUTO_DEVICE

# The design axes a backend may be handed are pec.maths.design_space.AXES, in a run's column
# order: GCR and spcf always (DEFAULT_AXES), then optionally the leg length in metres.


@dataclass(frozen=True)
class DesignColumns:
    """A run's designs split by axis: what the requests below carry."""

    gcr: np.ndarray
    spcf: np.ndarray
    leg: np.ndarray | None  # None: the default robot (a 2-D run)


def design_columns(
    axes: Sequence[str], designs: np.ndarray, supported: Sequence[str] = AXES
) -> DesignColumns:
    """Split (n, d) designs whose columns follow `axes` into the requests' per-axis arrays.

    `supported` is what the backend simulates; an axis outside it, a missing GCR or spcf
    column, a repeated axis or a shape that does not match `axes` is refused with one line.
    """
    names = [str(a) for a in axes]
    for name in names:
        if name not in AXES:
            raise InputError(f"design axis {name!r} is unknown; axes are {', '.join(AXES)}")
        if name not in supported:
            raise InputError(
                f"design axis {name!r} is not supported by this backend (it simulates "
                f"{', '.join(supported)}); drop the axis or choose another backend"
            )
    if len(set(names)) != len(names) or any(a not in names for a in DEFAULT_AXES):
        raise InputError(
            f"design axes {names} must name gcr and spcf once each (and optionally leg)"
        )
    array = np.asarray(designs, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != len(names):
        raise InputError(
            f"designs of shape {array.shape} do not match the {len(names)} axes {names}; "
            "pass one column per axis"
        )
    column = {name: array[:, i].copy() for i, name in enumerate(names)}
    return DesignColumns(gcr=column["gcr"], spcf=column["spcf"], leg=column.get("leg"))


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
    leg: np.ndarray | None = None  # (num_envs,) leg length in m; None = the default robot
    # True when resume_checkpoint is this job's own model_last.pt left by an interrupted
    # attempt (not a warm start): the job goes on, its first iteration stays where it was
    continues_job: bool = False
    # Distillation instead of PPO (pec.backends.mujoco.imitation): the experts to imitate and,
    # per environment, the position in `teachers` of the expert its design is routed to.
    teachers: tuple[Path, ...] = ()
    teacher_index: np.ndarray | None = None
    imitation_learning_rate: float = 3e-3


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
    leg: np.ndarray | None = None  # (n_designs,) leg length in m; None = the default robot


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
    leg: np.ndarray | None = None  # (n,) leg length in m; None = the default robot


def resolve_device(device: str) -> str:
    """`auto` becomes `cuda:0` where torch sees CUDA on this machine, else `cpu`.

    Called by the job layer on the machine that runs the job (a worker, a container), never
    where the run is configured; explicit devices are returned unchanged.
    """
    if device != AUTO_DEVICE:
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> None:
    """One clear error for a device this machine cannot run: not a torch device, or CUDA
    asked for where torch sees none (a CPU build, no driver, no GPU)."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"device {device!r} is not a torch device; pass cpu, cuda, cuda:0 or auto"
        ) from None
    if kind == "cuda" and not torch.cuda.is_available():
        build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU build")
        raise ConfigError(
            f"device {device!r} needs CUDA, which this machine lacks ({build}); "
            "pass --set device=cpu (or device: auto)"
        )


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
