"""A backend that does no simulation: the one zero-cost backend of tests and benchmarks.

Each training writes a tiny best and last checkpoint whose content names the request that
produced it (seed, starting level, the checkpoint it resumed from), reports every PPO
iteration as progress, and returns at once; each evaluation returns a level per design by a
rule that is easy to check by hand. What remains of a PEC iteration is orchestration, store
I/O and the PEC maths. Reachable by jobs only through the registry's test hook (names
starting with ``test-``), never from a configuration alone.
"""

from __future__ import annotations

from pec.backends.base import (
    CheckpointCallback,
    EvalRequest,
    ProgressCallback,
    TrainOutcome,
    TrainRequest,
)
from pec.maths.curriculum import MAX_LEVEL
from pec.maths.design_space import AXES


class ZeroCostBackend:
    """Tiny checkpoints, no physics.

    Evaluation levels: ``constant_level`` if given, else the job's ``settings["levels"]`` if
    it is a list, else ``start_difficulty + design index`` (capped at the top level).
    Subclasses (test doubles) hook into `on_iteration` and `at_moment`.
    """

    name = "test-zero-cost"
    design_axes: tuple[str, ...] = AXES  # no physics: any axis is fine

    def __init__(self, constant_level: int | None = None) -> None:
        self.constant_level = constant_level

    def on_iteration(self, request: TrainRequest, iteration: int) -> None:
        """Called after each reported PPO iteration."""

    def at_moment(self, request: TrainRequest, moment: str) -> None:
        """Called at "before_checkpoint" and "after_checkpoint" (between best and last)."""

    def train(
        self,
        request: TrainRequest,
        on_progress: ProgressCallback | None = None,
        on_checkpoint: CheckpointCallback | None = None,
    ) -> TrainOutcome:
        resume = request.resume_checkpoint
        tb_dir = request.work_dir / "tb"
        tb_dir.mkdir(parents=True, exist_ok=True)
        (tb_dir / "events.out.tfevents.1.double").write_bytes(b"tensorboard-double")
        metrics = {"mean_level": 0.0}
        for iteration in range(1, request.max_iterations + 1):
            metrics = {"mean_level": float(iteration), "mean_reward": 0.5 * iteration}
            if on_progress is not None:
                on_progress(iteration, request.max_iterations, metrics)
            self.on_iteration(request, iteration)
        self.at_moment(request, "before_checkpoint")
        content = f"best seed={request.seed} levels={request.start_level}".encode()
        if resume is not None:
            content += b" resumed-from=" + resume.read_bytes()
        best = request.work_dir / "model_best.pt"
        best.write_bytes(content)
        if on_checkpoint is not None:
            on_checkpoint(best)
        self.at_moment(request, "after_checkpoint")
        last = request.work_dir / "model_last.pt"
        last.write_bytes(b"last " + content)
        if on_checkpoint is not None:
            on_checkpoint(last)
        return TrainOutcome(
            best_checkpoint=best,
            last_checkpoint=last,
            metrics={**metrics, "iterations": float(request.max_iterations)},
        )

    def check_host(self, settings: dict[str, object], device: str) -> None:
        """Nothing to install for no physics."""

    def evaluate(self, request: EvalRequest) -> list[int]:
        if self.constant_level is not None:
            return [self.constant_level] * len(request.gcr)
        levels = request.settings.get("levels")
        if isinstance(levels, list):
            return [int(level) for level in levels]
        return [min(MAX_LEVEL, request.start_difficulty + i) for i in range(len(request.gcr))]
