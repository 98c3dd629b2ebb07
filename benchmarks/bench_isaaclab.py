"""Isaac Lab backend vs MuJoCo backend: env throughput on this CPU, and a learning check.

Throughput: env-steps/s (envs x control steps / s, each control step = 10 physics steps,
forces, observations, rewards and resets included) of `IsaacBalluVecEnv` (kit-less Newton,
MuJoCo-Warp on the CPU) and of the MuJoCo `BalluVecEnv`, same designs and random actions,
measured one after the other in this process; the ratio is Isaac Lab / MuJoCo. Scene
creation is not timed (Warp's kernel cache must be warm: run
`python -m pec.backends.isaaclab.warmup` first).

Learning check: one Isaac Lab expert trained with PPO on designs around one design point,
then the trained and the untrained policy (the same network before training) evaluated on
held-out designs around that point (final level after `--episodes` episodes from level 0).

    .venv/bin/python benchmarks/bench_isaaclab.py [--envs 16 64 256] [--steps 20]
    .venv/bin/python benchmarks/bench_isaaclab.py --learn --iterations 60 --train-envs 64
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_learning import learning_check

from pec.backends.isaaclab import IsaacLabBackend
from pec.backends.isaaclab.assets import ensure_assets
from pec.backends.isaaclab.settings import load_settings
from pec.backends.mujoco.env import BalluVecEnv


def _rate(env: object, num_envs: int, steps: int) -> float:
    gen = torch.Generator().manual_seed(0)
    actions = [torch.rand(num_envs, 2, generator=gen) for _ in range(steps + 1)]
    env.step(actions[0])  # type: ignore[attr-defined]  # first step outside the timing
    t0 = time.perf_counter()
    for a in actions[1:]:
        env.step(a)  # type: ignore[attr-defined]
    return num_envs * steps / (time.perf_counter() - t0)


def throughput(envs: list[int], steps: int) -> None:
    from pec.backends.isaaclab.task import make_vec_env

    settings = load_settings({})
    assets = ensure_assets()
    print(f"{'envs':>6} {'isaaclab env-steps/s':>21} {'mujoco env-steps/s':>19} {'ratio':>7}")
    for n in envs:
        rng = np.random.default_rng(0)
        gcr, spcf = rng.uniform(0.75, 0.89, n), rng.uniform(0.001, 0.01, n)
        isaac = make_vec_env(
            task=settings.task,
            gcr=gcr,
            spcf=spcf,
            start_level=0,
            seed=0,
            device="cpu",
            physics="newton",
            newton=settings.newton,
            assets=assets,
        )
        isaac_rate = _rate(isaac, n, steps)
        isaac.close()
        mujoco_rate = _rate(BalluVecEnv(n, gcr_values=gcr, spcf_values=spcf, seed=0), n, steps)
        print(f"{n:6d} {isaac_rate:21,.0f} {mujoco_rate:19,.0f} {isaac_rate / mujoco_rate:7.3f}")


def learn(args: argparse.Namespace) -> None:
    """The learning check of bench_learning.py, on the Isaac Lab backend."""
    t0 = time.time()
    untrained, _, trained = learning_check(
        IsaacLabBackend(),
        gcr=0.82,
        spcf=0.0055,
        envs=args.train_envs,
        iterations=args.iterations,
        designs=args.designs,
        episodes=args.episodes,
        warmup=args.warmup,
        seed=args.seed,
        work=Path(tempfile.mkdtemp(prefix="bench_isaaclab_")),
        progress_every=10,
    )
    print(f"difference (trained - untrained): {np.mean(trained) - np.mean(untrained):+.2f} levels")
    print(f"total wall time {time.time() - t0:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--steps", type=int, default=20, help="control steps per measurement")
    parser.add_argument("--learn", action="store_true", help="run the learning check instead")
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--train-envs", type=int, default=64)
    parser.add_argument("--designs", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=10, help="curriculum/goal warm-up its")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.learn:
        learn(args)
    else:
        throughput(args.envs, args.steps)


if __name__ == "__main__":
    main()
