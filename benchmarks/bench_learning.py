"""Does the embedded simulator really learn? Trained expert vs its untrained initial policy.

Trains one expert (MujocoBackend, rsl-rl-lib PPO) on designs drawn around one design-space
point, then evaluates both the trained policy and the *same* network before training on
the same held-out designs drawn around that point: final levels after `--episodes`
deterministic episodes from level 0. Target: trained - untrained >= +5 levels.

    .venv/bin/python benchmarks/bench_learning.py [--iterations 1000] [--envs 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pec.backends.base import EvalRequest, TrainRequest
from pec.backends.mujoco import MujocoBackend


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
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)

    def around(n: int) -> tuple[np.ndarray, np.ndarray]:
        gcr = np.clip(rng.normal(args.gcr, 0.01, n), 0.75, 0.89)
        spcf = np.clip(rng.normal(args.spcf, 0.0005, n), 0.001, 0.010)
        return gcr, spcf

    train_gcr, train_spcf = around(args.envs)
    eval_gcr, eval_spcf = around(args.designs)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_learning_"))
    settings: dict[str, object] = {
        "task": {
            "curriculum_warmup_iterations": args.warmup,
            "goal_warmup_iterations": args.warmup,
            "goal_ramp_iterations": args.warmup,
        }
    }
    request = TrainRequest(
        gcr=train_gcr,
        spcf=train_spcf,
        start_level=0,
        max_iterations=args.iterations,
        seed=args.seed,
        device="cpu",
        work_dir=work,
        settings=settings,
    )
    backend = MujocoBackend()
    # The untrained policy: the very network training starts from (same seed).
    initial = backend.build_trainer(request).runner.alg.save()
    initial.update({"iter": 0, "infos": None})
    init_path = work / "model_init.pt"
    torch.save(initial, init_path)

    t0 = time.time()

    def progress(it: int, total: int, m: dict[str, float]) -> None:
        if it % 25 == 0 or it == total:
            print(
                f"it {it:4d}/{total} {time.time() - t0:6.0f}s reward {m['mean_reward']:7.2f} "
                f"level {m['mean_level']:5.2f} best {m['best_mean_level']:5.2f}",
                flush=True,
            )

    outcome = backend.train(request, on_progress=progress)
    train_s = time.time() - t0
    print(f"training: {train_s:.0f} s, {outcome.metrics['env_steps']:.0f} env steps")

    def evaluate(path: Path) -> list[int]:
        return backend.evaluate(
            EvalRequest(
                checkpoint=path,
                gcr=eval_gcr,
                spcf=eval_spcf,
                num_episodes=args.episodes,
                start_difficulty=0,
                seed=args.seed,
                device="cpu",
                settings=settings,
            )
        )

    untrained = evaluate(init_path)
    trained_last = evaluate(outcome.last_checkpoint)
    trained_best = evaluate(outcome.best_checkpoint)
    print(f"untrained   levels {untrained} mean {np.mean(untrained):.2f}")
    print(f"trained last levels {trained_last} mean {np.mean(trained_last):.2f}")
    print(f"trained best levels {trained_best} mean {np.mean(trained_best):.2f}")
    diff = np.mean(trained_best) - np.mean(untrained)
    print(f"difference (best - untrained): {diff:+.2f} levels (target >= +5)")
    print(f"total wall time {time.time() - t0:.0f} s; files in {work}")


if __name__ == "__main__":
    main()
