"""`MujocoBackend`: PPO training (rsl-rl-lib `OnPolicyRunner`) and evaluation on BalluVecEnv.

The iteration loop is the runner's own (rollout, returns, update, log) spelled out here so
the backend can tell the env the PPO iteration (warm-ups), report progress, and keep the
best-level checkpoint. Checkpoints use rsl-rl's keys and are always loaded with
``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import statistics
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from rsl_rl.models import MLPModel
from rsl_rl.runners import OnPolicyRunner
from tensordict import TensorDict

from pec.backends.ballu import schedule
from pec.backends.ballu.design_inputs import design_inputs_pinned, pin_design_inputs
from pec.backends.base import (
    CheckpointCallback,
    EvalRequest,
    ProbeRequest,
    ProgressCallback,
    TrainOutcome,
    TrainRequest,
    check_device,
)
from pec.backends.mujoco.env import BalluVecEnv
from pec.backends.mujoco.imitation import (
    WARMED_UP_ITERATION,
    Distiller,
    copy_teacher_std,
    teacher_index_array,
    teacher_paths,
)
from pec.backends.mujoco.settings import MujocoSettings, PPOSettings
from pec.errors import ConfigError, InputError, JobError, one_line
from pec.maths.curriculum import MAX_LEVEL
from pec.maths.design_space import AXES

log = logging.getLogger(__name__)

OBS_GROUPS: dict[str, list[str]] = {"actor": ["policy"], "critic": ["policy"]}
BEST_NAME = "model_best.pt"
LAST_NAME = "model_last.pt"


def parse_settings(raw: dict[str, object]) -> MujocoSettings:
    """Validate backend settings, turning pydantic's error into a one-line ConfigError."""
    try:
        return MujocoSettings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"mujoco settings field '{where}': {first['msg']}; fix it in the backend settings"
        ) from exc


def train_cfg(ppo: PPOSettings) -> dict[str, Any]:
    """rsl-rl-lib 5.x runner configuration from our PPO settings."""
    dist = {"class_name": "GaussianDistribution", "init_std": ppo.init_std}
    return {
        "num_steps_per_env": ppo.num_steps_per_env,
        "save_interval": ppo.save_interval,
        "obs_groups": {k: list(v) for k, v in OBS_GROUPS.items()},
        "logger": "tensorboard",
        "check_for_nan": True,
        "algorithm": {
            "class_name": "PPO",
            "num_learning_epochs": ppo.num_learning_epochs,
            "num_mini_batches": ppo.num_mini_batches,
            "clip_param": ppo.clip_param,
            "gamma": ppo.gamma,
            "lam": ppo.lam,
            "value_loss_coef": ppo.value_loss_coef,
            "entropy_coef": ppo.entropy_coef,
            "learning_rate": ppo.learning_rate,
            "max_grad_norm": ppo.max_grad_norm,
            "use_clipped_value_loss": ppo.use_clipped_value_loss,
            "schedule": ppo.schedule,
            "desired_kl": ppo.desired_kl,
        },
        "actor": {
            "class_name": "MLPModel",
            "hidden_dims": list(ppo.actor_hidden_dims),
            "activation": ppo.activation,
            "obs_normalization": ppo.obs_normalization,
            "distribution_cfg": dist,
        },
        "critic": {
            "class_name": "MLPModel",
            "hidden_dims": list(ppo.critic_hidden_dims),
            "activation": ppo.activation,
            "obs_normalization": ppo.obs_normalization,
        },
    }


def load_checkpoint(path: Path, device: str = "cpu") -> dict[str, Any]:
    """Read an rsl-rl checkpoint safely (tensors and plain containers only)."""
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist; pass the path of a .pt file")
    try:
        loaded = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # any unpickling failure means a bad file
        raise InputError(
            f"checkpoint {path} cannot be read safely ({one_line(exc)}); re-export it"
        ) from exc
    if not isinstance(loaded, dict) or "actor_state_dict" not in loaded:
        raise InputError(f"checkpoint {path} has no actor_state_dict; pass an rsl-rl checkpoint")
    return loaded


def _atomic_save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _mean_episode_reward(finished: Iterable[float], running: torch.Tensor) -> float:
    """rsl-rl's last-100-episode mean; before any episode ended, the running partial sums."""
    done = list(finished)
    return statistics.mean(done) if done else float(running.mean())


def _finite_weights(state: dict[str, Any]) -> bool:
    """True when every tensor of the actor and critic is finite (worth resuming from)."""
    for name in ("actor_state_dict", "critic_state_dict"):
        for value in (state.get(name) or {}).values():
            if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
                return False
    return True


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def merged_settings(
    ckpt: dict[str, Any], raw: dict[str, object], known: Collection[str]
) -> dict[str, object]:
    """Checkpoint's own settings (architecture) overridden by the request's, as a raw dict.

    Of the checkpoint's settings only the sections this backend knows (`known`) are kept: a
    policy trained on another simulator of the task (Isaac Lab's `physics` and `newton`
    sections) plays here with its task and PPO settings. The request's own settings are
    kept whole, so a mistake in them is still refused by the settings model.
    """
    infos = ckpt.get("infos") or {}
    stored = dict(infos.get("settings") or {}) if isinstance(infos, dict) else {}
    base = {key: value for key, value in stored.items() if key in known}
    for key, value in raw.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def design_arrays(gcr: np.ndarray, spcf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-env designs as equal, non-empty float arrays (one error line otherwise)."""
    g = np.asarray(gcr, dtype=np.float64).reshape(-1)
    s = np.asarray(spcf, dtype=np.float64).reshape(-1)
    if g.size == 0 or g.shape != s.shape:
        raise InputError(
            f"gcr ({g.size}) and spcf ({s.size}) must be equal, non-empty per-design arrays"
        )
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(s))):
        raise InputError("gcr/spcf contain NaN/inf; pass finite design values")
    return g, s


def leg_array(leg: np.ndarray | None, designs: int) -> np.ndarray | None:
    """A request's leg lengths: None (the default robot) or one finite number per design."""
    if leg is None:
        return None
    array = np.asarray(leg, dtype=np.float64).reshape(-1)
    if array.shape != (designs,):
        raise InputError(f"leg has {array.size} entries for {designs} designs; pass one each")
    if not np.all(np.isfinite(array)):
        raise InputError("leg contains NaN/inf; pass finite leg lengths in metres")
    return array


def probe_level_array(levels: np.ndarray, designs: int) -> np.ndarray:
    """A probe request's levels: one whole number in [0, 74] per design."""
    array = np.asarray(levels).reshape(-1)
    if array.shape != (designs,):
        raise InputError(f"levels has {array.size} entries for {designs} designs; pass one each")
    if not np.all(np.equal(np.mod(array, 1), 0)) or array.min() < 0 or array.max() > MAX_LEVEL:
        raise InputError(f"probe levels must be whole numbers in [0, {MAX_LEVEL}]")
    return array.astype(np.int64)


def close_env(env: Any) -> None:
    """Release an env's simulator where it holds one (Isaac Lab's does; MuJoCo's needs none)."""
    close = getattr(env, "close", None)
    if callable(close):
        close()


def build_actor(env: BalluVecEnv, ppo: PPOSettings, device: str) -> MLPModel:
    """An actor with the training architecture, for evaluation outside the runner."""
    cfg = train_cfg(ppo)["actor"]
    cfg.pop("class_name")
    return MLPModel(env.get_observations(), OBS_GROUPS, "actor", env.num_actions, **cfg).to(device)


@dataclass
class Trainer:
    """What one training run works on (exposed so tests can inspect a warm start)."""

    runner: OnPolicyRunner
    env: BalluVecEnv
    settings: MujocoSettings
    start_iteration: int  # the policy's age (PPO iterations) when this attempt starts
    job_start_iteration: int  # its age when the job began (the warm-ups' origin per job)


class MujocoBackend:
    """BALLU on MuJoCo: the embedded simulator, trained with rsl-rl-lib PPO on CPU or GPU.

    Training, evaluation and probes are written once here; another simulator of the same
    task (`pec.backends.isaaclab`) overrides only the hooks `load_settings`, `make_env`,
    `settings_sections`, `simulation` and `play_probes`.
    """

    name = "mujoco"
    design_axes: tuple[str, ...] = AXES  # gcr, spcf and leg length

    # -- hooks a simulator of the same task overrides ------------------------------------
    def load_settings(self, raw: dict[str, object]) -> MujocoSettings:
        """The backend's settings model from a raw dict (one error line when invalid)."""
        return parse_settings(raw)

    def settings_sections(self) -> frozenset[str]:
        """The top-level keys of this backend's settings (what a checkpoint's may bring)."""
        return frozenset(MujocoSettings.model_fields)

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
        """One env per design, all starting at start_level (leg: per-env leg lengths)."""
        return BalluVecEnv(
            gcr.size,
            settings.task,
            gcr_values=gcr,
            spcf_values=spcf,
            leg_values=leg,
            start_level=start_level,
            seed=seed,
            device=device,
            eval_mode=eval_mode,
        )

    @contextlib.contextmanager
    def simulation(self, settings: Any, device: str) -> Iterator[None]:
        """What must run around a job (an app, a check that it is installed): here only the
        check that this machine can run the device."""
        check_device(device)
        yield

    @contextlib.contextmanager
    def job_scope(self, settings: Any, device: str, num_envs: int) -> Iterator[None]:
        """What surrounds every training, evaluation and probe job of `num_envs` robots:
        the simulator's `simulation` and the job's `compute_threads`."""
        with self.simulation(settings, device), self.compute_threads(settings, num_envs):
            yield

    @contextlib.contextmanager
    def compute_threads(self, settings: Any, num_envs: int) -> Iterator[None]:
        """Torch's intra-op threads while a job of `num_envs` robots runs: at most one per
        physics block (`physics_block_envs` robots), as the physics threads (`BalluBlocks`).

        The job's thread policy may give it more (cores // jobs in flight), but a job of one
        block, such as the main job's 64 envs, gains no wall time from a second torch thread
        and spends 1.8x the CPU spinning it (measured, README *Threads per job*); on a loaded host
        that spinning slows every other job too.
        """
        before = torch.get_num_threads()
        blocks = math.ceil(num_envs / settings.task.physics_block_envs)
        capped = max(1, min(before, blocks))
        if capped == before:
            yield
            return
        torch.set_num_threads(capped)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def check_host(self, settings: dict[str, object], device: str) -> None:
        """The preflight of the backend contract: MuJoCo ships with pec, nothing to check."""

    def play_probes(self, env: Any, actor: torch.nn.Module, levels: np.ndarray) -> list[bool]:
        """One episode per env at levels[i]; True where root x ended past promote_x."""
        env.set_levels(levels)
        run_episodes(env, actor, 1)
        with np.errstate(invalid="ignore"):
            passed = env.last_root_x > env.task.promote_x
        return [bool(v) for v in passed]

    # -- the backend contract -------------------------------------------------------------
    def train(
        self,
        request: TrainRequest,
        on_progress: ProgressCallback | None = None,
        on_checkpoint: CheckpointCallback | None = None,
    ) -> TrainOutcome:
        """PPO on one env per design; writes model_best.pt / model_last.pt under work_dir."""
        gcr, _ = design_arrays(request.gcr, request.spcf)
        leg_array(request.leg, gcr.size)
        if request.max_iterations < 1:
            raise InputError(f"max_iterations={request.max_iterations}; pass at least 1")
        if not 0 <= request.start_level <= MAX_LEVEL:
            raise InputError(f"start_level={request.start_level} is outside [0, {MAX_LEVEL}]")
        if request.teachers:
            teacher_paths(request.teachers)
            teacher_index_array(request.teacher_index, request.gcr.size, len(request.teachers))
            if not request.imitation_learning_rate > 0:
                raise InputError("imitation_learning_rate must be > 0")
        settings = self.load_settings(request.settings)
        with self.job_scope(settings, request.device, gcr.size):
            trainer = self.build_trainer(request)
            try:
                return self._learn(trainer, request, on_progress, on_checkpoint)
            finally:
                close_env(trainer.env)

    def build_distiller(self, trainer: Trainer, request: TrainRequest) -> Distiller:
        """The teachers' actors (each with its own settings) and the student's imitation."""
        states: list[dict[str, Any]] = []
        actors: list[torch.nn.Module] = []
        for path in teacher_paths(request.teachers):
            ckpt = load_checkpoint(path, request.device)
            settings = self.load_settings(merged_settings(ckpt, {}, self.settings_sections()))
            actor = build_actor(trainer.env, settings.ppo, request.device)
            try:
                actor.load_state_dict(ckpt["actor_state_dict"])
            except RuntimeError as exc:
                raise InputError(
                    f"teacher checkpoint {path} does not match its own settings ({exc})"
                ) from exc
            actor.eval()
            actors.append(actor)
            states.append(ckpt["actor_state_dict"])
        if trainer.start_iteration == 0:
            copy_teacher_std(trainer.runner.alg.actor, states)
        index = teacher_index_array(request.teacher_index, trainer.env.num_envs, len(actors))
        ppo = trainer.settings.ppo
        return Distiller(
            trainer.runner.alg,
            actors,
            index,
            seed=request.seed,
            learning_rate=request.imitation_learning_rate,
            epochs=ppo.num_learning_epochs,
            mini_batches=ppo.num_mini_batches,
            device=request.device,
            pin_design=ppo.design_inputs == "fixed",
        )

    def build_trainer(self, request: TrainRequest) -> Trainer:
        """Env + runner for a request, warm-started from resume_checkpoint if given."""
        settings = self.load_settings(request.settings)
        gcr, spcf = design_arrays(request.gcr, request.spcf)
        leg = leg_array(request.leg, gcr.size)
        resume = load_checkpoint(request.resume_checkpoint) if request.resume_checkpoint else None
        work_dir = Path(request.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        _seed_everything(request.seed)
        env = self.make_env(
            settings, gcr, spcf, request.start_level, request.seed, request.device, False, leg
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
                close_env(env)
                raise InputError(
                    f"resume_checkpoint {request.resume_checkpoint} does not fit these settings "
                    f"({one_line(exc)}); use the ppo hidden dims it was trained with"
                ) from exc
            start_it = int(resume.get("iter", 0))
            runner.current_learning_iteration = start_it
        if settings.ppo.design_inputs == "fixed":
            if resume is not None and not design_inputs_pinned(resume["actor_state_dict"]):
                # written with running design normalisation (before the setting existed):
                # continue it the way it was trained instead of shifting its inputs
                log.warning(
                    "resume_checkpoint %s normalises its design inputs by its own data; "
                    "continuing it with ppo.design_inputs: running",
                    request.resume_checkpoint,
                )
                ppo = settings.ppo.model_copy(update={"design_inputs": "running"})
                settings = settings.model_copy(update={"ppo": ppo})
            else:
                pin_design_inputs(runner.alg.actor, runner.alg.critic)
        job_start = start_it
        if request.continues_job and resume is not None:
            infos = resume.get("infos")
            stored = infos.get("job_start_iteration") if isinstance(infos, dict) else None
            if isinstance(stored, int) and 0 <= stored <= start_it:
                job_start = stored
        return Trainer(
            runner=runner,
            env=env,
            settings=settings,
            start_iteration=start_it,
            job_start_iteration=job_start,
        )

    def _learn(
        self,
        trainer: Trainer,
        request: TrainRequest,
        on_progress: ProgressCallback | None,
        on_checkpoint: CheckpointCallback | None,
    ) -> TrainOutcome:
        runner, env, settings = trainer.runner, trainer.env, trainer.settings
        start_it = trainer.start_iteration
        alg, logger = runner.alg, runner.logger
        steps = settings.ppo.num_steps_per_env
        work_dir = Path(request.work_dir)
        best_path, last_path = work_dir / BEST_NAME, work_dir / LAST_NAME
        settings_json = settings.model_dump(mode="json")
        best_level = -math.inf
        metrics: dict[str, float] = {}
        total_it = start_it + request.max_iterations
        completed_it, completed_level = start_it, math.nan  # last fully finished iteration

        def save(path: Path, done_it: int, mean_level: float) -> None:
            state = alg.save()
            state["iter"] = done_it
            state["infos"] = {
                "settings": settings_json,
                "mean_level": mean_level,
                "job_start_iteration": trainer.job_start_iteration,
            }
            _atomic_save(state, path)
            if on_checkpoint is not None:
                on_checkpoint(path)

        distiller = self.build_distiller(trainer, request) if request.teachers else None
        obs = env.get_observations().to(request.device)
        alg.train_mode()
        # rsl-rl would run `git status/diff` on the repo holding rsl_rl (may touch .git/index)
        logger.git_status_repos = []
        with contextlib.redirect_stdout(io.StringIO()):
            logger.init_logging_writer()
        try:
            for it in range(start_it, total_it):
                if distiller is None:
                    # the policy's age `it` (or the job's count, warmup_clock: job)
                    env.set_training_iteration(
                        schedule.warmup_iteration(settings.task, it, trainer.job_start_iteration)
                    )
                else:  # imitation: rollouts past the warm-ups, DAgger's mixture for this round
                    env.set_training_iteration(WARMED_UP_ITERATION)
                    distiller.start_iteration(it - trainer.job_start_iteration)
                t0 = time.time()
                with torch.inference_mode():
                    for _ in range(steps):
                        actions = alg.act(obs) if distiller is None else distiller.act(obs)
                        obs, rewards, dones, extras = env.step(actions.to(env.device))
                        obs = obs.to(request.device)
                        rewards, dones = rewards.to(request.device), dones.to(request.device)
                        alg.process_env_step(obs, rewards, dones, extras)
                        logger.process_env_step(rewards, dones, extras, None)
                    t1 = time.time()
                    alg.compute_returns(obs)
                loss = alg.update() if distiller is None else distiller.update()
                if settings.ppo.design_inputs == "fixed":
                    pin_design_inputs(alg.actor, alg.critic)
                t2 = time.time()
                runner.current_learning_iteration = it
                with contextlib.redirect_stdout(io.StringIO()):
                    logger.log(
                        it=it,
                        start_it=start_it,
                        total_it=total_it,
                        collect_time=t1 - t0,
                        learn_time=t2 - t1,
                        loss_dict=loss,
                        learning_rate=alg.learning_rate,
                        action_std=alg.get_policy().output_std,
                        rnd_weight=None,
                    )
                done_it = it + 1
                mean_level = float(env.levels.mean())
                rew = _mean_episode_reward(logger.rewbuffer, logger.cur_reward_sum)
                metrics = {
                    "mean_reward": rew,
                    "mean_level": mean_level,
                    "iterations": float(done_it),
                    "env_steps": float((done_it - start_it) * steps * env.num_envs),
                    "value_loss": float(loss.get("value", 0.0)),
                    "action_std": float(alg.get_policy().output_std.detach().mean()),
                }
                if distiller is not None:
                    metrics["imitation_loss"] = float(loss["imitation"])
                    metrics["teacher_share"] = float(loss["teacher_share"])
                end_x = env.pop_episode_root_x()
                if np.isfinite(end_x):
                    metrics["episode_root_x"] = end_x
                if not all(np.isfinite(v) for v in metrics.values()):
                    raise JobError(f"training diverged at iteration {it} (non-finite metrics)")
                # a student improves as it imitates: on a tie the later policy is the better one
                improved = mean_level > best_level or (
                    distiller is not None and mean_level >= best_level
                )
                if improved or (
                    mean_level == best_level and done_it % settings.ppo.save_interval == 0
                ):
                    best_level = max(best_level, mean_level)
                    save(best_path, done_it, mean_level)
                metrics["best_mean_level"] = best_level
                if done_it % settings.ppo.save_interval == 0 or done_it == total_it:
                    save(last_path, done_it, mean_level)
                completed_it, completed_level = done_it, mean_level
                if on_progress is not None:
                    on_progress(done_it, total_it, dict(metrics))
                log.debug("iteration %d/%d %s", done_it, total_it, metrics)
        except (JobError, InputError):
            raise  # our own verdicts (e.g. divergence): nothing worth keeping
        except BaseException:
            # Stopped from outside (SIGTERM -> exception in pec.jobs) or crashed: keep the
            # progress as model_last.pt so the next attempt can continue from it.
            if completed_it > start_it and _finite_weights(alg.save()):
                try:
                    save(last_path, completed_it, completed_level)
                    log.warning("interrupted: saved %s at iteration %d", LAST_NAME, completed_it)
                except Exception:  # never hide the interruption itself
                    log.exception("could not save %s while stopping", LAST_NAME)
            raise
        finally:
            if logger.writer is not None:
                logger.writer.flush()
                logger.writer.close()
        return TrainOutcome(best_checkpoint=best_path, last_checkpoint=last_path, metrics=metrics)

    def policy_env(
        self,
        checkpoint: Path,
        raw_settings: dict[str, object],
        gcr: np.ndarray,
        spcf: np.ndarray,
        start_level: int,
        seed: int,
        device: str,
        leg: np.ndarray | None = None,
    ) -> tuple[Any, torch.nn.Module]:
        """An evaluation-mode env (one per design) and the checkpoint's deterministic actor."""
        ckpt = load_checkpoint(checkpoint, device)
        settings = self.load_settings(merged_settings(ckpt, raw_settings, self.settings_sections()))
        _seed_everything(seed)
        env = self.make_env(settings, gcr, spcf, start_level, seed, device, True, leg)
        actor = build_actor(env, settings.ppo, device)
        try:
            actor.load_state_dict(ckpt["actor_state_dict"])
        except RuntimeError as exc:
            close_env(env)
            raise InputError(
                f"checkpoint {checkpoint} does not match the actor settings ({one_line(exc)}); "
                "evaluate with the settings it was trained with"
            ) from exc
        actor.eval()
        return env, actor

    def evaluate(self, request: EvalRequest) -> list[int]:
        """Final level per design after num_episodes deterministic episodes from the start."""
        gcr, spcf = design_arrays(request.gcr, request.spcf)
        leg = leg_array(request.leg, gcr.size)
        if request.num_episodes < 1:
            raise InputError(f"num_episodes={request.num_episodes}; pass at least 1")
        if not 0 <= request.start_difficulty <= MAX_LEVEL:
            raise InputError(
                f"start_difficulty={request.start_difficulty} is outside [0, {MAX_LEVEL}]"
            )
        settings = self.load_settings(request.settings)
        with self.job_scope(settings, request.device, gcr.size):
            env, actor = self.policy_env(
                request.checkpoint,
                request.settings,
                gcr,
                spcf,
                request.start_difficulty,
                request.seed,
                request.device,
                leg,
            )
            try:
                return run_episodes(env, actor, request.num_episodes)
            finally:
                close_env(env)

    def probe_levels(self, request: ProbeRequest) -> list[bool]:
        """One deterministic episode per design at its own level: passed (root x > promote_x)?

        All designs run as parallel environments; each env's obstacle is set to its level
        before the episode, and the level rule's promotion test on the episode's final root x
        decides (a blown-up episode, NaN x, fails).
        """
        gcr, spcf = design_arrays(request.gcr, request.spcf)
        leg = leg_array(request.leg, gcr.size)
        levels = probe_level_array(request.levels, gcr.size)
        settings = self.load_settings(request.settings)
        with self.job_scope(settings, request.device, gcr.size):
            env, actor = self.policy_env(
                request.checkpoint,
                request.settings,
                gcr,
                spcf,
                0,
                request.seed,
                request.device,
                leg,
            )
            try:
                return self.play_probes(env, actor, levels)
            finally:
                close_env(env)


def run_episodes(env: BalluVecEnv, actor: torch.nn.Module, num_episodes: int) -> list[int]:
    """Roll the deterministic actor until every env has finished num_episodes episodes."""
    final = env.levels.copy()
    recorded = np.zeros(env.num_envs, dtype=bool)
    obs: TensorDict = env.get_observations()
    max_steps = num_episodes * env.max_episode_length + 1
    with torch.inference_mode():
        for _ in range(max_steps):
            obs, _, _, _ = env.step(actor(obs))
            newly = (env.episodes_done >= num_episodes) & ~recorded
            final[newly] = env.levels[newly]
            recorded |= newly
            if recorded.all():
                break
    final[~recorded] = env.levels[~recorded]
    return [int(v) for v in final]
