"""PPO of one MuJoCo BALLU expert on cpu vs cuda:0, collection and update timed apart.

Part 1, per env count (default 1024 and 4096): a few PPO iterations of one expert with the
default PPO settings, once with the policy on `cpu` and once on `cuda:0`, both with the same
physics threads (the MuJoCo physics always runs on the CPU: `--threads`, default every
core). Collection (policy act + env steps + storage) and the update (returns + PPO epochs)
are timed apart, with CUDA synchronised before each clock read. Part 2: K experts in
parallel on this host (K processes, each `cores // K` physics threads, policies on
cuda:0): total env-steps/s against K = 1. One table; where CUDA is absent it refuses with
one line (exit 2).

    python benchmarks/bench_gpu.py [--envs 1024 4096] [--iterations 3] [--experts 1 2 4]
        [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pec.backends.base import TrainRequest
from pec.backends.mujoco import MujocoBackend
from pec.backends.mujoco.backend import Trainer
from pec.jobs.threads import available_cores


def build(num_envs: int, device: str, work: Path, seed: int = 0) -> Trainer:
    """One expert's env + PPO runner, designs spread over the design space."""
    rng = np.random.default_rng(seed)
    request = TrainRequest(
        gcr=rng.uniform(0.75, 0.89, num_envs),
        spcf=rng.uniform(0.001, 0.010, num_envs),
        start_level=0,
        max_iterations=1,
        seed=seed,
        device=device,
        work_dir=work,
        settings={},
    )
    return MujocoBackend().build_trainer(request)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def ppo_iterations(trainer: Trainer, device: str, iterations: int) -> tuple[float, float, int]:
    """(collection seconds, update seconds, env steps) over `iterations` PPO iterations.

    The loop of `MujocoBackend._learn` without its logging and checkpoints.
    """
    runner, env = trainer.runner, trainer.env
    alg, steps = runner.alg, trainer.settings.ppo.num_steps_per_env
    obs = env.get_observations().to(device)
    alg.train_mode()
    collect = update = 0.0
    for it in range(iterations):
        env.set_training_iteration(it)
        _sync(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for _ in range(steps):
                actions = alg.act(obs)
                obs, rewards, dones, extras = env.step(actions.to(env.device))
                obs = obs.to(device)
                alg.process_env_step(obs, rewards.to(device), dones.to(device), extras)
            _sync(device)
            t1 = time.perf_counter()
            alg.compute_returns(obs)
        alg.update()
        _sync(device)
        t2 = time.perf_counter()
        collect, update = collect + t1 - t0, update + t2 - t1
    return collect, update, iterations * steps * env.num_envs


def one_expert(num_envs: int, device: str, iterations: int) -> tuple[float, float, int]:
    """Warm up one iteration (CUDA context, kernels), then time `iterations`."""
    with tempfile.TemporaryDirectory(prefix="pec-bench-gpu-") as tmp:
        trainer = build(num_envs, device, Path(tmp))
        ppo_iterations(trainer, device, 1)
        result = ppo_iterations(trainer, device, iterations)
        trainer.env.close()
        return result


def worker(args: argparse.Namespace) -> None:
    """One of K parallel experts: prints its JSON line (wall seconds, env steps)."""
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="pec-bench-gpu-") as tmp:
        trainer = build(args.envs[0], "cuda:0", Path(tmp), seed=args.worker)
        ppo_iterations(trainer, "cuda:0", 1)
        start = time.perf_counter()
        _, _, env_steps = ppo_iterations(trainer, "cuda:0", args.iterations)
        wall = time.perf_counter() - start
        trainer.env.close()
    print(json.dumps({"wall": wall, "env_steps": env_steps}))


def parallel_experts(k: int, num_envs: int, iterations: int, cores: int) -> float:
    """Total env-steps/s of k experts training side by side (k processes)."""
    threads = max(1, cores // k)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    procs = []
    for i in range(k):
        cmd = [sys.executable, __file__, "--worker", str(i), "--envs", str(num_envs)]
        cmd += ["--iterations", str(iterations), "--threads", str(threads)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env))
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("bench_gpu: a parallel expert failed; see its output above")
    return float(sum(o["env_steps"] for o in outs) / max(o["wall"] for o in outs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--iterations", type=int, default=3, help="timed PPO iterations")
    parser.add_argument("--experts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            f"bench_gpu: CUDA is not available here (torch {torch.__version__}); "
            "run it on a host with an NVIDIA GPU and a CUDA build of torch",
            file=sys.stderr,
        )
        sys.exit(2)
    if args.worker is not None:
        worker(args)
        return
    torch.set_num_threads(args.threads)
    cores = available_cores()
    print(f"GPU {torch.cuda.get_device_name(0)}; {cores} cores; physics threads {args.threads}")
    print(
        f"{'envs':>6} {'device':>7} {'collect s/it':>13} {'update s/it':>12}"
        f" {'env-steps/s':>12} {'update x':>9}"
    )
    for n in args.envs:
        cpu_update = 0.0
        for device in ("cpu", "cuda:0"):
            collect, update, steps = one_expert(n, device, args.iterations)
            its = args.iterations
            cpu_update = update if device == "cpu" else cpu_update
            gain = f"{cpu_update / update:>9.2f}" if device != "cpu" else f"{1.0:>9.2f}"
            print(
                f"{n:>6} {device:>7} {collect / its:>13.3f} {update / its:>12.3f}"
                f" {steps / (collect + update):>12,.0f} {gain}",
                flush=True,
            )
    base = 0.0
    n = args.envs[0]
    print(f"\nK experts in parallel ({n} envs each, policies on cuda:0, cores // K threads)")
    print(f"{'K':>3} {'total env-steps/s':>18} {'vs K=1':>7} {'cores':>6}")
    for k in sorted(args.experts):
        rate = parallel_experts(k, n, args.iterations, cores)
        base = base or rate
        print(f"{k:>3} {rate:>18,.0f} {rate / base:>7.2f} {cores:>6}", flush=True)


if __name__ == "__main__":
    main()
