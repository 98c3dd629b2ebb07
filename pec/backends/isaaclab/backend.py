"""`IsaacLabBackend`: PPO training, evaluation and level probes of pec's BALLU task on Isaac Lab.

The PPO loop, checkpoints (rsl-rl format, `model_best.pt`/`model_last.pt`), warm starts,
SIGTERM handling and evaluation episodes are the MuJoCo backend's own code
(`pec.backends.mujoco.backend`), run on the Isaac Lab env through the same VecEnv
interface; only the env differs. Isaac Lab is imported when a job starts, never at import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from pec.backends.isaaclab.settings import IsaacLabSettings, load_settings
from pec.backends.mujoco.backend import MujocoBackend
from pec.errors import ConfigError
from pec.maths.design_space import AXES

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


class IsaacLabBackend(MujocoBackend):
    """BALLU on Isaac Lab 3.0; training, evaluation and probes are the MuJoCo backend's code.

    Only the hooks differ: the settings model, the env, what runs around a job (the check
    that Isaac Lab is installed, Isaac Sim's app for PhysX) and how a probe episode is played.
    """

    name = "isaaclab"
    design_axes: tuple[str, ...] = AXES  # gcr, spcf and leg (one USD per leg length)

    def load_settings(self, raw: dict[str, object]) -> IsaacLabSettings:  # type: ignore[override]
        return load_settings(raw)

    def settings_sections(self) -> frozenset[str]:
        return frozenset(IsaacLabSettings.model_fields)

    def make_env(
        self,
        settings: Any,
        gcr: np.ndarray,
        spcf: np.ndarray,
        start_level: int,
        seed: int,
        device: str,
        eval_mode: bool,
        leg: np.ndarray | None = None,
    ) -> Any:
        require_isaaclab(settings, device)
        from pec.backends.isaaclab.assets import ensure_assets
        from pec.backends.isaaclab.task import make_vec_env

        t = settings.task
        assets = ensure_assets(t.ground_friction, t.obstacle_start_x, t.obstacle_length, t.terrain)
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
            leg=leg,
        )

    def check_host(self, settings: dict[str, object], device: str) -> None:
        """The Isaac Lab extra (and Isaac Sim for PhysX) installed here, CUDA if asked for."""
        require_local_isaaclab(settings, device)

    @contextlib.contextmanager
    def simulation(self, settings: Any, device: str) -> Iterator[None]:
        """Isaac Lab must be installed; Isaac Sim's app runs around a PhysX job."""
        require_isaaclab(settings, device)
        if settings.physics != "physx":
            yield
            return
        from isaaclab.app import AppLauncher  # pragma: no cover - needs Isaac Sim

        app = AppLauncher(headless=True)  # pragma: no cover
        try:  # pragma: no cover
            yield
        finally:  # pragma: no cover
            app.app.close()

    @contextlib.contextmanager
    def compute_threads(self, settings: Any, num_envs: int) -> Iterator[None]:
        """The job's torch threads as its policy set them (no physics blocks here)."""
        yield

    def play_probes(self, env: Any, actor: torch.nn.Module, levels: np.ndarray) -> list[bool]:
        return probe_episodes(env, actor, levels)


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
