"""Policy distillation on the student's own states (DAgger), for every backend of the BALLU task.

A training job given teachers (`TrainRequest.teachers`, one expert checkpoint each, and
`teacher_index`, the teacher of every environment's design) trains the student by imitation
instead of PPO. Each PPO-sized rollout is driven by a mixture: with probability
``beta = 0.5 ** i`` (i = the distillation iteration) an environment executes its teacher's
action, otherwise the student's deterministic action (DAgger's decaying mixture, Ross et al.
2011; i = 0 is pure teacher). Every visited observation is labelled with the teacher's
deterministic action on it; the student's actor is then fitted to those labels (mean squared
error), and its critic to the rollout's GAE returns, so a PPO fine-tune can start from it.

Each teacher sees the raw observation through its own normaliser; the student keeps its own,
updated from its states before each fit. The student is an rsl-rl actor-critic saved with
`PPO.save()`, so it is evaluated, warm-started and exported exactly like an expert. The
imitation has its own Adam optimiser: the saved PPO optimiser state stays untouched, so a PPO
fine-tune starts with PPO's own learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from pec.backends.ballu.design_inputs import pin_design_inputs
from pec.errors import InputError

# The student's rollouts run past every warm-up (the level rule on, the goal reward whole):
# imitation uses no reward, and the critic learns the returns a PPO fine-tune will see.
WARMED_UP_ITERATION = 1_000_000
DAGGER_DECAY = 0.5  # beta_i = DAGGER_DECAY ** i: share of teacher-driven actions


def teacher_index_array(index: np.ndarray | None, num_envs: int, teachers: int) -> np.ndarray:
    """One teacher per environment: whole numbers in [0, teachers) (one error line otherwise)."""
    if index is None:
        raise InputError("teachers were given without teacher_index; pass one teacher per env")
    array = np.asarray(index).reshape(-1)
    if array.shape != (num_envs,):
        raise InputError(f"teacher_index has {array.size} entries for {num_envs} envs")
    if not np.all(np.isfinite(array)) or not np.all(np.equal(np.mod(array, 1), 0)):
        raise InputError("teacher_index must hold whole numbers (expert positions)")
    if array.min() < 0 or array.max() >= teachers:
        raise InputError(f"teacher_index must lie in [0, {teachers - 1}] for {teachers} teachers")
    return array.astype(np.int64)


class Distiller:
    """The rollout's actions and the student's fit for one distillation job.

    `teachers` are evaluation-mode actors (each with its own normaliser), `index` the teacher
    of every environment. `act` is called once per env step, `update` once per iteration.
    """

    def __init__(
        self,
        alg: Any,
        teachers: Sequence[torch.nn.Module],
        index: np.ndarray,
        *,
        seed: int,
        learning_rate: float,
        epochs: int,
        mini_batches: int,
        device: str,
        pin_design: bool = False,
    ) -> None:
        self.alg = alg
        self.pin_design = pin_design  # ppo.design_inputs: fixed (pec.backends.ballu.design_inputs)
        self.teachers = list(teachers)
        self.index = torch.as_tensor(index, dtype=torch.long, device=device)
        self.epochs = epochs
        self.mini_batches = mini_batches
        self.device = device
        self.beta = 1.0
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        params = [*alg.actor.parameters(), *alg.critic.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=learning_rate)
        self._obs: list[TensorDict] = []
        self._labels: list[torch.Tensor] = []

    def start_iteration(self, iteration: int) -> None:
        """DAgger's mixture for distillation iteration `iteration` (0 = the first of this job)."""
        self.beta = DAGGER_DECAY**iteration
        self._obs, self._labels = [], []

    def labels(self, obs: TensorDict) -> torch.Tensor:
        """Each environment's teacher action on its observation (deterministic)."""
        outputs = torch.stack([teacher(obs) for teacher in self.teachers])  # (T, n, a)
        rows = torch.arange(outputs.shape[1], device=outputs.device)
        return outputs[self.index, rows]

    def act(self, obs: TensorDict) -> torch.Tensor:
        """Record the step for PPO's storage (values, returns), label it, pick the executed action."""
        self.alg.act(obs)  # the transition's values feed the critic's returns
        label = self.labels(obs)
        own: torch.Tensor = self.alg.actor(obs)
        self._obs.append(obs.clone())
        self._labels.append(label.clone())
        if self.beta <= 0.0:
            return own
        draw = torch.rand(label.shape[0], generator=self.generator).to(label.device)
        return torch.where((draw < self.beta)[:, None], label, own)

    def update(self) -> dict[str, float]:
        """Fit the student's actor to the labels and its critic to the returns; mean losses.

        `imitation` is the mean squared action error on this rollout's states *before* the fit
        (the student's error where it actually went, DAgger's measure of progress).
        """
        alg = self.alg
        # clones made here, outside the rollout's inference mode, can take part in autograd
        obs = torch.cat([o.unsqueeze(0) for o in self._obs]).flatten(0, 1).clone()
        labels = torch.cat(self._labels).clone()
        returns = alg.storage.returns.flatten(0, 1).clone()
        alg.actor.update_normalization(obs)
        alg.critic.update_normalization(obs)
        if self.pin_design:
            pin_design_inputs(alg.actor, alg.critic)
        with torch.no_grad():
            before = float(torch.mean((alg.actor(obs) - labels) ** 2))
        total = labels.shape[0]
        size = max(1, total // self.mini_batches)
        action_loss = value_loss = 0.0
        steps = 0
        for _ in range(self.epochs):
            order = torch.randperm(total, generator=self.generator).to(labels.device)
            for start in range(0, total, size):
                batch = order[start : start + size]
                imitation = torch.mean((alg.actor(obs[batch]) - labels[batch]) ** 2)
                value = torch.mean((alg.critic(obs[batch]) - returns[batch]) ** 2)
                self.optimizer.zero_grad()
                (imitation + value).backward()  # type: ignore[no-untyped-call]
                torch.nn.utils.clip_grad_norm_(alg.actor.parameters(), 1.0)
                torch.nn.utils.clip_grad_norm_(alg.critic.parameters(), 1.0)
                self.optimizer.step()
                action_loss += float(imitation.detach())
                value_loss += float(value.detach())
                steps += 1
        alg.storage.clear()
        return {
            "imitation": before,
            "imitation_fit": action_loss / steps,
            "value": value_loss / steps,
            "teacher_share": self.beta,
        }


def copy_teacher_std(student: torch.nn.Module, teacher_states: Sequence[dict[str, Any]]) -> None:
    """Start the student's action noise at the teachers' mean (its mean is what is imitated)."""
    stds = [
        state["distribution.std_param"]
        for state in teacher_states
        if "distribution.std_param" in state
    ]
    target = getattr(getattr(student, "distribution", None), "std_param", None)
    if not stds or not isinstance(target, torch.nn.Parameter):
        return
    with torch.no_grad():
        target.copy_(torch.stack([s.to(target.device) for s in stds]).mean(0))


def teacher_paths(paths: Sequence[Path]) -> list[Path]:
    """The teachers' checkpoint files; at least one, each a file."""
    if not paths:
        raise InputError("distillation needs at least one teacher checkpoint")
    for path in paths:
        if not Path(path).is_file():
            raise InputError(f"teacher checkpoint {path} does not exist; pass an expert's .pt")
    return [Path(p) for p in paths]
