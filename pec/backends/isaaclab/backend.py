"""`IsaacLabBackend`: PPO training, evaluation and level probes of pec's BALLU task on Isaac Lab.

The PPO loop, checkpoints (rsl-rl format, `model_best.pt`/`model_last.pt`), warm starts,
SIGTERM handling and evaluation episodes are the MuJoCo backend's own code
(`pec.backends.mujoco.backend`), run on the Isaac Lab env through the same VecEnv
interface; only the env differs. Isaac Lab is imported when a job starts, never at import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pec.backends.base import (
    CheckpointCallback,
    EvalRequest,
    ProbeRequest,
    ProgressCallback,
    TrainOutcome,
    TrainRequest,
)
from pec.backends.isaaclab.settings import IsaacLabSettings, load_settings
from pec.backends.mujoco.backend import (
    MujocoBackend,
    Trainer,
    build_actor,
    load_checkpoint,
    run_episodes,
    train_cfg,
)
from pec.errors import ConfigError, InputError
from pec.maths.curriculum import MAX_LEVEL

log = logging.getLogger(__name__)

INSTALL_HINT = "bash scripts/setup.sh isaaclab"


def require_isaaclab(settings: IsaacLabSettings, device: str) -> None:
    """One clear error when what the settings ask for is not installed here."""
    if importlib.util.find_spec("isaaclab") is None or importlib.util.find_spec("newton") is None:
        raise ConfigError(
            f"backend 'isaaclab' needs the Isaac Lab extra, which is not installed; "
            f"run '{INSTALL_HINT}' (or use backend: mujoco)"
        )
    if settings.physics == "physx" and importlib.util.find_spec("isaacsim") is None:
        raise ConfigError(
            "backend_settings.physics 'physx' needs Isaac Sim, which is not installed here; "
            "use physics: newton (kit-less) or run in an image with Isaac Sim"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} needs CUDA, which this machine lacks; pass --set device=cpu"
        )


def require_local_isaaclab(raw_settings: dict[str, object], device: str) -> None:
    """`require_isaaclab` for a config's backend settings (the run's preflight)."""
    require_isaaclab(load_settings(raw_settings), device)


def _merged(ckpt: dict[str, Any], raw: dict[str, object]) -> IsaacLabSettings:
    """Checkpoint's own settings (architecture) overridden by the request's."""
    infos = ckpt.get("infos") or {}
    base = dict(infos.get("settings") or {}) if isinstance(infos, dict) else {}
    for key, value in raw.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_settings(base)


def _designs(gcr: np.ndarray, spcf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(gcr, dtype=np.float64).reshape(-1)
    s = np.asarray(spcf, dtype=np.float64).reshape(-1)
    if g.size == 0 or g.shape != s.shape:
        raise InputError(
            f"gcr ({g.size}) and spcf ({s.size}) must be equal, non-empty per-env arrays"
        )
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(s))):
        raise InputError("gcr/spcf contain NaN/inf; pass finite design values")
    return g, s


@contextlib.contextmanager
def _simulation(settings: IsaacLabSettings) -> Iterator[None]:
    """Isaac Sim's app for PhysX; nothing to start for kit-less Newton."""
    if settings.physics != "physx":
        yield
        return
    from isaaclab.app import AppLauncher  # pragma: no cover - needs Isaac Sim

    app = AppLauncher(headless=True)  # pragma: no cover
    try:  # pragma: no cover
        yield
    finally:  # pragma: no cover
        app.app.close()


class IsaacLabBackend(MujocoBackend):
    """BALLU on Isaac Lab 3.0; the training loop and checkpoints are the MuJoCo backend's."""

    name = "isaaclab"

    def _make_env(
        self,
        settings: IsaacLabSettings,
        gcr: np.ndarray,
        spcf: np.ndarray,
        start_level: int,
        seed: int,
        device: str,
        eval_mode: bool,
    ) -> Any:
        require_isaaclab(settings, device)
        from pec.backends.isaaclab.assets import ensure_assets
        from pec.backends.isaaclab.task import make_vec_env

        t = settings.task
        assets = ensure_assets(t.ground_friction, t.obstacle_start_x, t.obstacle_length)
        return make_vec_env(
            task=t,
            gcr=gcr,
            spcf=spcf,
            start_level=start_level,
            seed=seed,
            device=device,
            physics=settings.physics,
            newton=settings.newton,
            assets=assets,
            eval_mode=eval_mode,
        )

    def train(
        self,
        request: TrainRequest,
        on_progress: ProgressCallback | None = None,
        on_checkpoint: CheckpointCallback | None = None,
    ) -> TrainOutcome:
        """PPO on one env per design; writes model_best.pt / model_last.pt under work_dir."""
        _designs(request.gcr, request.spcf)
        if request.max_iterations < 1:
            raise InputError(f"max_iterations={request.max_iterations}; pass at least 1")
        settings = load_settings(request.settings)
        require_isaaclab(settings, request.device)
        with _simulation(settings):
            trainer = self.build_trainer(request)
            try:
                return self._learn(trainer, request, on_progress, on_checkpoint)
            finally:
                trainer.env.close()

    def build_trainer(self, request: TrainRequest) -> Trainer:
        """Env + runner for a request, warm-started from resume_checkpoint if given."""
        from rsl_rl.runners import OnPolicyRunner

        settings = load_settings(request.settings)
        gcr, spcf = _designs(request.gcr, request.spcf)
        resume = load_checkpoint(request.resume_checkpoint) if request.resume_checkpoint else None
        if not 0 <= request.start_level <= MAX_LEVEL:
            raise InputError(f"start_level={request.start_level} is outside [0, {MAX_LEVEL}]")
        work_dir = Path(request.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(request.seed)
        np.random.seed(request.seed % (2**32))
        env = self._make_env(
            settings, gcr, spcf, request.start_level, request.seed, request.device, False
        )
        with contextlib.redirect_stdout(io.StringIO()):
            runner = OnPolicyRunner(
                env, train_cfg(settings.ppo), log_dir=str(work_dir / "tb"), device=request.device
            )
        start_it = 0
        if resume is not None:
            try:
                runner.alg.load(resume, {"actor": True, "critic": True, "optimizer": True}, True)
            except (RuntimeError, KeyError, ValueError) as exc:
                env.close()
                raise InputError(
                    f"resume_checkpoint {request.resume_checkpoint} does not fit these settings "
                    f"({exc}); use the ppo hidden dims it was trained with"
                ) from exc
            start_it = int(resume.get("iter", 0))
            runner.current_learning_iteration = start_it
        return Trainer(runner=runner, env=env, settings=settings, start_iteration=start_it)  # type: ignore[arg-type]

    def _policy_env(
        self,
        checkpoint: Path,
        raw: dict[str, object],
        gcr: np.ndarray,
        spcf: np.ndarray,
        start_level: int,
        seed: int,
        device: str,
    ) -> tuple[Any, torch.nn.Module]:
        ckpt = load_checkpoint(checkpoint, device)
        settings = _merged(ckpt, raw)
        torch.manual_seed(seed)
        np.random.seed(seed % (2**32))
        env = self._make_env(settings, gcr, spcf, start_level, seed, device, True)
        actor = build_actor(env, settings.ppo, device)
        try:
            actor.load_state_dict(ckpt["actor_state_dict"])
        except RuntimeError as exc:
            env.close()
            raise InputError(
                f"checkpoint {checkpoint} does not match the actor settings ({exc}); "
                "evaluate with the settings it was trained with"
            ) from exc
        actor.eval()
        return env, actor

    def evaluate(self, request: EvalRequest) -> list[int]:
        """Final level per design after num_episodes deterministic episodes from the start."""
        gcr, spcf = _designs(request.gcr, request.spcf)
        if request.num_episodes < 1:
            raise InputError(f"num_episodes={request.num_episodes}; pass at least 1")
        if not 0 <= request.start_difficulty <= MAX_LEVEL:
            raise InputError(
                f"start_difficulty={request.start_difficulty} is outside [0, {MAX_LEVEL}]"
            )
        settings = load_settings(request.settings)
        require_isaaclab(settings, request.device)
        with _simulation(settings):
            env, actor = self._policy_env(
                request.checkpoint,
                request.settings,
                gcr,
                spcf,
                request.start_difficulty,
                request.seed,
                request.device,
            )
            try:
                return run_episodes(env, actor, request.num_episodes)
            finally:
                env.close()

    def probe_levels(self, request: ProbeRequest) -> list[bool]:
        """One deterministic episode per design at its own level: did root x pass promote_x?"""
        gcr, spcf = _designs(request.gcr, request.spcf)
        levels = np.asarray(request.levels).reshape(-1)
        if levels.shape != gcr.shape:
            raise InputError(
                f"levels has {levels.size} entries for {gcr.size} designs; pass one each"
            )
        if levels.size and (
            not np.all(np.equal(np.mod(levels, 1), 0))
            or levels.min() < 0
            or levels.max() > MAX_LEVEL
        ):
            raise InputError(f"levels must be whole numbers in [0, {MAX_LEVEL}]")
        settings = load_settings(request.settings)
        require_isaaclab(settings, request.device)
        with _simulation(settings):
            env, actor = self._policy_env(
                request.checkpoint, request.settings, gcr, spcf, 0, request.seed, request.device
            )
            try:
                return probe_episodes(env, actor, levels.astype(np.int64))
            finally:
                env.close()


def probe_episodes(env: Any, actor: torch.nn.Module, levels: np.ndarray) -> list[bool]:
    """Play one episode per env at `levels[i]`; True where root x ended past promote_x."""
    inner = env.env
    inner.levels[:] = levels
    inner._initial_reset = True  # place every env at its level without a level rule
    inner._reset_idx(torch.arange(env.num_envs, device=inner.device))
    inner._initial_reset = False
    inner.episodes_done[:] = 0
    inner.obs_buf = inner._get_observations()
    recorded = np.zeros(env.num_envs, dtype=bool)
    end_x = np.full(env.num_envs, np.nan)
    obs = env.get_observations()
    with torch.inference_mode():
        for _ in range(env.max_episode_length + 1):
            obs, _, _, _ = env.step(actor(obs))
            newly = (inner.episodes_done >= 1) & ~recorded
            end_x[newly] = inner.last_end_x[newly]
            recorded |= newly
            if recorded.all():
                break
    with np.errstate(invalid="ignore"):
        return [bool(v) for v in end_x > inner.task.promote_x]
