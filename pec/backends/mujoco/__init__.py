"""The embedded BALLU simulator on MuJoCo, trained with rsl-rl-lib PPO."""

from pec.backends.mujoco.backend import MujocoBackend
from pec.backends.mujoco.env import BalluVecEnv
from pec.backends.mujoco.settings import BalluTaskSettings, MujocoSettings, PPOSettings

__all__ = ["BalluTaskSettings", "BalluVecEnv", "MujocoBackend", "MujocoSettings", "PPOSettings"]
