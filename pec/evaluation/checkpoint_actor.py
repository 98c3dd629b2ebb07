"""The training checkpoint's actor, rebuilt exactly as training and evaluation build it.

What `pec export` exports and checks its exports against (`pec.evaluation.bundle_export`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from pec.errors import InputError, one_line


def load_actor(checkpoint: Path) -> torch.nn.Module:
    """The checkpoint's actor exactly as training/evaluation builds it (rsl-rl MLPModel).

    Architecture comes from the settings the backend saved in the checkpoint's ``infos``;
    observation and action sizes from the weights themselves.
    """
    from rsl_rl.models import MLPModel
    from tensordict import TensorDict

    from pec.backends.mujoco.backend import OBS_GROUPS, load_checkpoint, parse_settings, train_cfg

    ckpt = load_checkpoint(checkpoint)
    infos = ckpt.get("infos") or {}
    raw = dict(infos.get("settings") or {}) if isinstance(infos, dict) else {}
    settings = parse_settings(raw)
    weights: dict[str, torch.Tensor] = ckpt["actor_state_dict"]
    first = weights.get("mlp.0.weight")
    if first is None:
        raise InputError(f"checkpoint {checkpoint}: actor has no mlp.0.weight; not an MLP actor")
    obs_dim = int(first.shape[1])
    std = weights.get("distribution.std_param")
    if std is not None:
        action_dim = int(std.shape[0])
    else:
        last = max(
            (k for k in weights if k.startswith("mlp.") and k.endswith(".weight")),
            key=lambda k: int(k.split(".")[1]),
        )
        action_dim = int(weights[last].shape[0])
    cfg = train_cfg(settings.ppo)["actor"]
    cfg.pop("class_name")
    obs = TensorDict({"policy": torch.zeros(1, obs_dim)}, batch_size=[1])
    actor = MLPModel(obs, OBS_GROUPS, "actor", action_dim, **cfg)
    try:
        actor.load_state_dict(weights)
    except RuntimeError as exc:
        raise InputError(
            f"checkpoint {checkpoint} does not match its recorded actor settings ({one_line(exc)}); "
            "re-export it from the training that wrote it"
        ) from exc
    actor.eval()
    module: torch.nn.Module = actor
    return module


def actor_actions(actor: torch.nn.Module, observations: ArrayLike) -> NDArray[np.float32]:
    """Deterministic actions of a training actor (TensorDict input, as in evaluation)."""
    from tensordict import TensorDict

    obs = torch.as_tensor(np.asarray(observations, dtype=np.float32))
    with torch.inference_mode():
        out = actor(TensorDict({"policy": obs}, batch_size=[obs.shape[0]]))
    result: NDArray[np.float32] = out.detach().cpu().numpy().astype(np.float32)
    return result
