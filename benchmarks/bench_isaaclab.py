"""Isaac Lab backend vs MuJoCo backend: env throughput on this CPU, and a learning check.

Throughput: env-steps/s (envs x control steps / s, each control step = 10 physics steps,
forces, observations, rewards and resets included) of `IsaacBalluVecEnv` (kit-less Newton,
MuJoCo-Warp on the CPU) and of the MuJoCo `BalluVecEnv`, same designs and random actions,
measured one after the other in this process; the ratio is Isaac Lab / MuJoCo. Scene
creation is not timed (Warp's kernel cache must be warm: run
`python -m pec.backends.isaaclab.warmup` first).

Learning check, from scratch: one Isaac Lab expert trained with PPO on designs around one
design point, then the trained and the untrained policy (the same network before training)
evaluated on held-out designs around that point (final level after `--episodes` episodes
from level 0). Target: trained - untrained >= 3 levels.

Learning check, warm-started (`--warm-start CKPT`, pec's own warm start across backends):
a checkpoint trained on MuJoCo is scored on Isaac Lab by level search on held-out designs
around the point (its zero-shot score), then trained on with PPO on Isaac Lab (from the
zero-shot median level, warm-ups off: the policy already walks), and scored again the same
way. Target: after - zero-shot >= 2 levels. The fine-tuned expert is scored on MuJoCo too
(the reverse direction of bench_sim2sim's transfer).

    .venv/bin/python benchmarks/bench_isaaclab.py [--envs 256 512 1024 2048 4096] [--steps 20]
    .venv/bin/python benchmarks/bench_isaaclab.py --learn --iterations 60 --train-envs 64
    .venv/bin/python benchmarks/bench_isaaclab.py --learn --warm-start model_best.pt \
        --iterations 150 --train-envs 256 --designs 8 --work-dir /tmp/isaac_warm
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_learning import learning_check
from bench_sim2sim import around, search, search_ceiling

from pec.backends.base import TrainRequest
from pec.backends.isaaclab import IsaacLabBackend
from pec.backends.isaaclab.assets import ensure_assets
from pec.backends.isaaclab.settings import load_settings
from pec.backends.mujoco import MujocoBackend
from pec.backends.mujoco.env import BalluVecEnv


def _rate(env: object, num_envs: int, steps: int) -> tuple[float, float]:
    """(env-steps per wall second, env-steps per CPU second of this process).

    Both backends step on this one thread (Warp runs its CPU kernels in the caller), so the
    CPU-time rate is what an idle core would give; on a shared, loaded machine the wall rate
    is lower by the share of the core the process got.
    """
    gen = torch.Generator().manual_seed(0)
    actions = [torch.rand(num_envs, 2, generator=gen) for _ in range(steps + 1)]
    env.step(actions[0])  # type: ignore[attr-defined]  # first step outside the timing
    t0, c0 = time.perf_counter(), time.process_time()
    for a in actions[1:]:
        env.step(a)  # type: ignore[attr-defined]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return num_envs * steps / wall, num_envs * steps / cpu


def throughput(envs: list[int], steps: int) -> None:
    from pec.backends.isaaclab.task import make_vec_env

    settings = load_settings({})
    assets = ensure_assets()
    print("env-steps/s per wall second and per CPU second (one thread each)")
    print(
        f"{'envs':>6} {'isaaclab wall':>14} {'isaaclab cpu':>13} {'mujoco wall':>12}"
        f" {'mujoco cpu':>11} {'ratio cpu':>10}",
        flush=True,
    )
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
        isaac_wall, isaac_cpu = _rate(isaac, n, steps)
        isaac.close()
        mj = BalluVecEnv(n, gcr_values=gcr, spcf_values=spcf, seed=0)
        mujoco_wall, mujoco_cpu = _rate(mj, n, steps)
        print(
            f"{n:6d} {isaac_wall:14,.0f} {isaac_cpu:13,.0f} {mujoco_wall:12,.0f}"
            f" {mujoco_cpu:11,.0f} {isaac_cpu / mujoco_cpu:10.3f}",
            flush=True,
        )


def warm_start(args: argparse.Namespace) -> None:
    """A MuJoCo-trained checkpoint, trained on on Isaac Lab: level-search score before/after."""
    t0 = time.time()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_isaaclab_warm_"))
    isaac, mujoco = IsaacLabBackend(), MujocoBackend()
    rng = np.random.default_rng(args.seed + 1)
    designs = around((args.gcr, args.spcf), args.designs, rng)  # held-out
    train = around((args.gcr, args.spcf), args.train_envs, np.random.default_rng(args.seed))
    ckpt = Path(args.warm_start)
    c0 = time.process_time()
    # Every search runs over the same levels 0..top: a policy that passes a level but fails a
    # lower one (it happens) makes bisections over different ranges disagree.
    top = search_ceiling(search(mujoco, ckpt, designs, args.seed))
    print(f"level searches run over 0..{top}", flush=True)
    home = search(mujoco, ckpt, designs, args.seed, top)
    print(f"checkpoint on MuJoCo (home)      levels {home} mean {np.mean(home):.2f}", flush=True)
    zero_shot = search(isaac, ckpt, designs, args.seed, top)
    print(f"zero-shot on Isaac Lab           levels {zero_shot} mean {np.mean(zero_shot):.2f}")
    ratio = float(np.mean(zero_shot)) / max(float(np.mean(home)), 1e-9)
    print(f"transfer MuJoCo -> Isaac Lab: {ratio:.2f} of the home level")
    print(f"scoring took {time.time() - t0:.0f} s ({time.process_time() - c0:.0f} cpu s)")
    start = int(np.median(zero_shot))
    settings: dict[str, object] = {
        "task": {
            "curriculum_warmup_iterations": 0,
            "goal_warmup_iterations": 0,
            "goal_ramp_iterations": 0,
        }
    }
    request = TrainRequest(
        gcr=train[:, 0].copy(),
        spcf=train[:, 1].copy(),
        start_level=start,
        max_iterations=args.iterations,
        seed=args.seed,
        device="cpu",
        work_dir=work / "isaaclab_expert",
        resume_checkpoint=ckpt,
        settings=settings,
    )
    t1, c1 = time.time(), time.process_time()

    def progress(it: int, total: int, m: dict[str, float]) -> None:
        if it % 5 == 0 or it == total:
            wall, cpu = time.time() - t1, time.process_time() - c1
            print(
                f"it {it:4d}/{total} {wall:6.0f}s (cpu {cpu:5.0f}s) reward {m['mean_reward']:7.2f}"
                f" level {m['mean_level']:5.2f} best {m['best_mean_level']:5.2f} "
                f"{m['env_steps'] / wall:5.0f} env-steps/s wall, {m['env_steps'] / cpu:5.0f} per"
                " cpu s (PPO included)",
                flush=True,
            )

    outcome = isaac.train(request, on_progress=progress)
    train_s, train_cpu = time.time() - t1, time.process_time() - c1
    print(
        f"training on Isaac Lab: {train_s:.0f} s ({train_cpu:.0f} cpu s), "
        f"{outcome.metrics['env_steps']:.0f} env steps, "
        f"{args.train_envs} envs from level {start}",
        flush=True,
    )
    # model_best.pt is what pec keeps as the expert; one Isaac Lab search costs minutes here
    back_home = search(mujoco, outcome.best_checkpoint, designs, args.seed, top)
    print(f"after, best, back on MuJoCo      levels {back_home} mean {np.mean(back_home):.2f}")
    after_best = search(isaac, outcome.best_checkpoint, designs, args.seed, top)
    print(f"after, best, on Isaac Lab        levels {after_best} mean {np.mean(after_best):.2f}")
    gain = float(np.mean(after_best)) - float(np.mean(zero_shot))
    print(f"gain over zero-shot on Isaac Lab: {gain:+.2f} levels (target >= +2)")
    back = float(np.mean(back_home)) / max(float(np.mean(after_best)), 1e-9)
    print(f"transfer Isaac Lab -> MuJoCo (best): {back:.2f} of its Isaac Lab level")
    print(f"total wall time {time.time() - t0:.0f} s; files in {work}")
    (work / "warm_start.json").write_text(
        json.dumps(
            {
                "designs": designs.tolist(),
                "home": home,
                "search_ceiling": top,
                "zero_shot": zero_shot,
                "after_best": after_best,
                "back_on_mujoco": back_home,
                "start_level": start,
                "train_seconds": train_s,
                "train_cpu_seconds": train_cpu,
                "env_steps": outcome.metrics["env_steps"],
            },
            indent=2,
        )
    )


def learn(args: argparse.Namespace) -> None:
    """The learning check of bench_learning.py, on the Isaac Lab backend."""
    if args.warm_start:
        warm_start(args)
        return
    t0 = time.time()
    untrained, _, trained = learning_check(
        IsaacLabBackend(),
        gcr=args.gcr,
        spcf=args.spcf,
        envs=args.train_envs,
        iterations=args.iterations,
        designs=args.designs,
        episodes=args.episodes,
        warmup=args.warmup,
        seed=args.seed,
        work=args.work_dir or Path(tempfile.mkdtemp(prefix="bench_isaaclab_")),
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
    parser.add_argument("--warm-start", default=None, help="MuJoCo checkpoint to train on")
    parser.add_argument("--gcr", type=float, default=0.82, help="design point: GCR")
    parser.add_argument("--spcf", type=float, default=0.0055, help="design point: spcf")
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.learn:
        learn(args)
    else:
        throughput(args.envs, args.steps)


if __name__ == "__main__":
    main()
