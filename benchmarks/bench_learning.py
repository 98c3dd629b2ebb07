"""Does the embedded simulator really learn? Trained expert vs its untrained initial policy.

Trains one expert (MujocoBackend, rsl-rl-lib PPO) on designs drawn around one design-space
point, then evaluates both the trained policy and the *same* network before training on
the same held-out designs drawn around that point: final levels after `--episodes`
deterministic episodes from level 0. Target: trained - untrained >= +5 levels.

    .venv/bin/python benchmarks/bench_learning.py [--iterations 1000] [--envs 128]
        [--terrain obstacle|ramp]

With `--resume-at N` it measures what the warm-up clock does to a warm start instead: one
job trains N iterations from scratch, then a warm-started job trains the remaining
`--iterations - N` under each `warmup_clock` (`policy_age`, the default, and `job`, the
original scripts' count), beside one uninterrupted job of `--iterations` (the baseline,
measured in the same run); all on the same held-out designs. The warm-started jobs start at
curriculum level 0 unless `--resume-level pec` starts them where a PEC iteration would:
the first job's held-out levels through `pec.maths.curriculum.starting_level` (floor of
the mean minus the config's default `dl_buffer`), as `starting_level_for` does with an
expert's frontier scores.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pec.backends.base import EvalRequest, TrainRequest
from pec.backends.mujoco import MujocoBackend
from pec.backends.mujoco.backend import LAST_NAME, close_env
from pec.backends.mujoco.settings import PPOSettings
from pec.maths.curriculum import starting_level
from pec.runs.config import PECConfig

SAVE_INTERVAL: int = PPOSettings.model_fields["save_interval"].default  # model_last.pt cadence


def learning_check(
    backend: MujocoBackend,
    *,
    gcr: float,
    spcf: float,
    envs: int,
    iterations: int,
    designs: int,
    episodes: int,
    warmup: int,
    seed: int,
    work: Path,
    progress_every: int = 25,
    terrain: str = "obstacle",
) -> tuple[list[int], list[int], list[int]]:
    """Train one expert around (gcr, spcf); final levels of untrained, last and best policy.

    The untrained policy is the very network training starts from (same seed); all three are
    evaluated on the same held-out designs around the point, `episodes` deterministic
    episodes from level 0. Works for any backend built on MujocoBackend's hooks.
    """
    rng = np.random.default_rng(seed)

    def around(n: int) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.clip(rng.normal(gcr, 0.01, n), 0.75, 0.89),
            np.clip(rng.normal(spcf, 0.0005, n), 0.001, 0.010),
        )

    train_gcr, train_spcf = around(envs)
    eval_gcr, eval_spcf = around(designs)
    settings: dict[str, object] = {
        "task": {
            "terrain": terrain,
            "curriculum_warmup_iterations": warmup,
            "goal_warmup_iterations": warmup,
            "goal_ramp_iterations": warmup,
        }
    }
    request = TrainRequest(
        gcr=train_gcr,
        spcf=train_spcf,
        start_level=0,
        max_iterations=iterations,
        seed=seed,
        device="cpu",
        work_dir=work,
        settings=settings,
    )
    trainer = backend.build_trainer(request)
    initial = trainer.runner.alg.save()
    close_env(trainer.env)
    initial.update({"iter": 0, "infos": {"settings": backend.load_settings(settings).model_dump()}})
    init_path = work / "model_init.pt"
    torch.save(initial, init_path)
    t0 = time.time()

    def progress(it: int, total: int, m: dict[str, float]) -> None:
        if it % progress_every == 0 or it == total:
            print(
                f"it {it:4d}/{total} {time.time() - t0:6.0f}s reward {m['mean_reward']:7.2f} "
                f"level {m['mean_level']:5.2f} best {m['best_mean_level']:5.2f}",
                flush=True,
            )

    outcome = backend.train(request, on_progress=progress)
    print(f"training: {time.time() - t0:.0f} s, {outcome.metrics['env_steps']:.0f} env steps")

    def evaluate(path: Path) -> list[int]:
        return backend.evaluate(
            EvalRequest(
                checkpoint=path,
                gcr=eval_gcr,
                spcf=eval_spcf,
                num_episodes=episodes,
                start_difficulty=0,
                seed=seed,
                device="cpu",
                settings=settings,
            )
        )

    untrained = evaluate(init_path)
    trained_last = evaluate(outcome.last_checkpoint)
    trained_best = evaluate(outcome.best_checkpoint)
    print(f"untrained    levels {untrained} mean {np.mean(untrained):.2f}")
    print(f"trained last levels {trained_last} mean {np.mean(trained_last):.2f}")
    print(f"trained best levels {trained_best} mean {np.mean(trained_best):.2f}")
    return untrained, trained_last, trained_best


def warm_start_check(
    backend: MujocoBackend,
    *,
    gcr: float,
    spcf: float,
    envs: int,
    iterations: int,
    resume_at: int,
    designs: int,
    episodes: int,
    warmup: int,
    seed: int,
    work: Path,
    resume_level: str = "0",
) -> dict[str, list[int]]:
    """Final levels of an uninterrupted job and of a warm start under each warm-up clock.

    `resume_level`: the warm starts' first curriculum level, a number or `pec` (from the first
    job's held-out levels, as a PEC iteration starts an expert from its frontier scores).
    """
    rng = np.random.default_rng(seed)
    train_gcr = np.clip(rng.normal(gcr, 0.01, envs), 0.75, 0.89)
    train_spcf = np.clip(rng.normal(spcf, 0.0005, envs), 0.001, 0.010)
    eval_gcr = np.clip(rng.normal(gcr, 0.01, designs), 0.75, 0.89)
    eval_spcf = np.clip(rng.normal(spcf, 0.0005, designs), 0.001, 0.010)

    def settings(clock: str) -> dict[str, object]:
        return {
            "task": {
                "curriculum_warmup_iterations": warmup,
                "goal_warmup_iterations": warmup,
                "goal_ramp_iterations": warmup,
                "warmup_clock": clock,
            }
        }

    def train(
        name: str,
        its: int,
        clock: str,
        resume: Path | None,
        keep_at: int | None = None,
        start_level: int = 0,
    ) -> Path:
        """Train; with `keep_at`, also keep model_last.pt as written at that iteration."""
        t0 = time.time()
        kept = work / f"{name}_at_{keep_at}.pt"

        def keep(path: Path) -> None:
            if path.name == LAST_NAME and torch.load(path, weights_only=True)["iter"] == keep_at:
                shutil.copyfile(path, kept)

        request = TrainRequest(
            gcr=train_gcr,
            spcf=train_spcf,
            start_level=start_level,
            max_iterations=its,
            seed=seed,
            device="cpu",
            work_dir=work / name,
            resume_checkpoint=resume,
            settings=settings(clock),
        )
        outcome = backend.train(request, on_checkpoint=keep if keep_at else None)
        m = outcome.metrics
        print(
            f"{name}: {its} iterations in {time.time() - t0:.0f} s, training level "
            f"{m['mean_level']:.2f} (best {m['best_mean_level']:.2f})",
            flush=True,
        )
        return kept if keep_at else outcome.last_checkpoint

    def evaluate(path: Path) -> list[int]:
        return backend.evaluate(
            EvalRequest(
                checkpoint=path,
                gcr=eval_gcr,
                spcf=eval_spcf,
                num_episodes=episodes,
                start_difficulty=0,
                seed=seed,
                device="cpu",
                settings=settings("policy_age"),
            )
        )

    # The first job of the warm starts is the uninterrupted job's own policy at `resume_at`
    # (model_last.pt as saved then): the same seed trains the same weights up to there.
    first = train("uninterrupted", iterations, "policy_age", None, keep_at=resume_at)
    whole = work / "uninterrupted" / LAST_NAME
    finals = {
        "uninterrupted": evaluate(whole),
        f"first job only ({resume_at} it.)": evaluate(first),
    }
    first_levels = finals[f"first job only ({resume_at} it.)"]
    if resume_level == "pec":
        defaults = PECConfig.model_fields
        level = starting_level(
            first_levels, defaults["dl_initial"].default, defaults["dl_buffer"].default
        )
    else:
        level = int(resume_level)
    print(f"warm starts begin at curriculum level {level}", flush=True)
    for clock in ("policy_age", "job"):
        resumed = train(f"resumed-{clock}", iterations - resume_at, clock, first, start_level=level)
        finals[f"warm start, warmup_clock {clock}"] = evaluate(resumed)
    return finals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--envs", type=int, default=128)
    parser.add_argument("--gcr", type=float, default=0.82, help="design-space point: GCR")
    parser.add_argument("--spcf", type=float, default=0.0055, help="design-space point: spcf")
    parser.add_argument("--designs", type=int, default=16, help="evaluation designs")
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes")
    parser.add_argument("--warmup", type=int, default=20, help="curriculum/goal warm-up its")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--terrain", choices=["obstacle", "ramp"], default="obstacle", help="the task"
    )
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument(
        "--resume-at",
        type=int,
        default=0,
        help="measure warm starts: first job's iterations (0 = the plain learning check)",
    )
    parser.add_argument(
        "--resume-level",
        default="0",
        help="warm starts' first curriculum level: a number, or 'pec' (from the first job's"
        " held-out levels, as a PEC iteration does)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_learning_"))
    t0 = time.time()
    if args.resume_at:
        if args.resume_level != "pec" and not args.resume_level.isdigit():
            parser.error("--resume-level: pass a level (0, 1, ...) or 'pec'")
        if not 0 < args.resume_at < args.iterations or args.resume_at % SAVE_INTERVAL:
            parser.error(
                f"--resume-at must lie between 0 and --iterations, a multiple of {SAVE_INTERVAL}"
            )
        finals = warm_start_check(
            MujocoBackend(),
            gcr=args.gcr,
            spcf=args.spcf,
            envs=args.envs,
            iterations=args.iterations,
            resume_at=args.resume_at,
            designs=args.designs,
            episodes=args.episodes,
            warmup=args.warmup,
            seed=args.seed,
            work=work,
            resume_level=args.resume_level,
        )
        baseline = float(np.mean(finals["uninterrupted"]))
        print(f"{'policy (last checkpoint)':<36} {'mean level':>10} {'vs uninterrupted':>16}")
        for name, levels in finals.items():
            mean = float(np.mean(levels))
            print(f"{name:<36} {mean:>10.2f} {mean / max(baseline, 1e-9):>15.2f}x")
        print(f"total wall time {time.time() - t0:.0f} s; files in {work}")
        return
    untrained, _, trained_best = learning_check(
        MujocoBackend(),
        gcr=args.gcr,
        spcf=args.spcf,
        envs=args.envs,
        iterations=args.iterations,
        designs=args.designs,
        episodes=args.episodes,
        warmup=args.warmup,
        seed=args.seed,
        work=work,
        terrain=args.terrain,
    )
    print(f"task: {args.terrain}")
    diff = np.mean(trained_best) - np.mean(untrained)
    print(f"difference (best - untrained): {diff:+.2f} levels (target >= +5)")
    print(f"total wall time {time.time() - t0:.0f} s; files in {work}")


if __name__ == "__main__":
    main()
