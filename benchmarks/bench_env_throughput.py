"""BalluVecEnv throughput at T physics threads, and vs raw `mj_step`, in the same process.

Every column counts robot-physics-steps per second (envs x physics steps / s). The env
columns include the per-step numpy forces, observations, rewards, resets and the torch
conversion; the env's robots are cut into scenes of `--block` robots (the task setting
`physics_block_envs`) and a control step runs the scenes on T threads
(`pec.backends.mujoco.blocks`). `raw` is bare `mj_step` on scenes of the same designs, one
thread, no forces, each control step's physics steps started from the state the T = 1 env is
in (copied outside the timing; stepping the env's own scenes without forces, as before, let
the robots fall into contact-heavy states and made `raw` slower than the env). The envs of
all T and the raw stepping are interleaved in turns of `--chunk` control steps (default 20)
on the same designs and actions, so every column sees the same machine load while a
T-thread env keeps its threads busy for a whole turn. (Turns of one control step, as
before, understated T = 2 on an idle machine: 0.53 efficiency at 256 envs against 0.93 for
the same env stepped alone.)

Printed: per env count, the env rate at each T, the rate per thread, the cores the process
actually got while stepping at that T (CPU time / wall time: on a loaded machine T threads
may get fewer than T cores), env/raw at T = 1 and the env's robot-steps per CPU-second of
this process at the first T (far less disturbed by other processes than wall time); then
`efficiency at T=2: X` (speed-up / T, at the largest env count) and the spread of the
per-thread rate at T = 1 over env counts (goal: within 15 % from 64 to 4096 envs), the same
spread per CPU-second. Load averages are printed before and after. (An Amdahl bound from
env/raw is no longer printed: raw scenes restarted from the env's state every control step
run at about the env's rate, so their ratio no longer measures the work outside `mj_step`;
the efficiency line measures the speed-up itself.)

Earlier figures (one scene for all robots, one thread, issue 12): env/raw 0.86 at 64 envs,
0.93 at 256, 1.01 at 1024 on the shared 2-core VM; raw mj_step fell from 167k robot-steps/s
at 64 envs to 96.5k at 1024 and 44.7k at 2048 (issue 20). See docs/DEPLOYING.md for the
figures with blocks and threads.

    .venv/bin/python benchmarks/bench_env_throughput.py [--envs 64 256 1024] [--threads 1 2]
        [--steps 200] [--block 64] [--chunk 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import mujoco
import torch

from pec.backends.mujoco.env import BalluVecEnv
from pec.backends.mujoco.settings import BalluTaskSettings

DECIMATION = BalluTaskSettings().decimation  # type: ignore[call-arg]


def measure(
    num_envs: int, threads: list[int], control_steps: int, block: int, chunk: int
) -> tuple[dict[int, float], dict[int, float], float, float]:
    """({T: env rate}, {T: cores used}, raw rate, env per CPU-s at T[0]).

    Rates are robot-physics-steps per wall second; the last per CPU second of this
    process, which a loaded machine disturbs far less than wall time.
    """
    task = BalluTaskSettings(physics_block_envs=block)  # type: ignore[call-arg]
    envs = {
        t: BalluVecEnv(
            num_envs,
            task,
            gcr_range=(0.75, 0.89),
            spcf_range=(0.001, 0.01),
            seed=0,
            threads=t,
        )
        for t in threads
    }
    # Raw stepping gets scenes of its own (the same designs), set to the first env's state
    # before each control step's physics steps (outside the timing): bare mj_step from the
    # states the env really visits, without moving the env itself.
    raw_env = BalluVecEnv(
        num_envs, task, gcr_range=(0.75, 0.89), spcf_range=(0.001, 0.01), seed=0, threads=1
    )
    raw_scenes = [(b.model, b.data) for b in raw_env.sim.blocks]
    sources = [b.data for b in envs[threads[0]].sim.blocks]
    gen = torch.Generator().manual_seed(0)
    actions = [torch.rand(num_envs, 2, generator=gen) for _ in range(control_steps)]
    for env in envs.values():
        env.step(actions[0])  # warm up (threads started, caches filled)
    wall = dict.fromkeys(threads, 0.0)
    cpu = dict.fromkeys(threads, 0.0)
    raw_time = 0.0
    for start in range(0, control_steps, chunk):
        part = actions[start : start + chunk]
        for t, env in envs.items():
            c0, t0 = time.process_time(), time.perf_counter()
            for a in part:
                env.step(a)
            wall[t] += time.perf_counter() - t0
            cpu[t] += time.process_time() - c0
        for _ in part:
            for (_, d), source in zip(raw_scenes, sources, strict=True):
                d.qpos[:] = source.qpos
                d.qvel[:] = source.qvel
                d.qacc_warmstart[:] = source.qacc_warmstart  # the solver's start, as the env's
            t0 = time.perf_counter()
            for m, d in raw_scenes:
                for _ in range(DECIMATION):
                    mujoco.mj_step(m, d)
            raw_time += time.perf_counter() - t0
    for env in (*envs.values(), raw_env):
        env.close()
    work = num_envs * control_steps * DECIMATION
    rates = {t: work / wall[t] for t in threads}
    cores = {t: cpu[t] / wall[t] for t in threads}
    return rates, cores, work / raw_time, work / cpu[threads[0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--steps", type=int, default=200, help="control steps per measurement")
    parser.add_argument("--block", type=int, default=64, help="robots per scene")
    parser.add_argument(
        "--chunk", type=int, default=20, help="control steps per turn of each column"
    )
    args = parser.parse_args()
    threads = sorted(set(args.threads))
    if threads[0] < 1:
        parser.error("--threads: pass thread counts >= 1")
    if args.chunk < 1 or args.steps < 1:
        parser.error("--steps and --chunk: pass counts >= 1")
    torch.set_num_threads(1)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"block {args.block} robots per scene, {args.steps} control steps per measurement")
    head = f"{'envs':>6} {'blocks':>6} {'T':>3} {'env steps/s':>12} {'per thread':>11}"
    head += f" {'cores used':>10}"
    print(f"{head} {'raw T=1':>10} {'env/raw':>8} {'per CPU-s':>10}")
    per_thread_t1: list[float] = []
    per_cpu_t1: list[float] = []
    speedups: dict[int, float] = {}
    ratio_first = None
    for n in sorted(args.envs):
        rates, cores, raw_rate, env_cpu = measure(n, threads, args.steps, args.block, args.chunk)
        for t in threads:
            blocks = -(-n // args.block)
            line = f"{n:>6} {blocks:>6} {t:>3} {rates[t]:>12,.0f} {rates[t] / t:>11,.0f}"
            line += f" {cores[t]:>10.2f}"
            if t == threads[0]:
                ratio = rates[t] / raw_rate
                ratio_first = ratio if ratio_first is None else ratio_first
                line += f" {raw_rate:>10,.0f} {ratio:>8.2f} {env_cpu:>10,.0f}"
            print(line, flush=True)
        if 1 in rates:
            per_thread_t1.append(rates[1])
            per_cpu_t1.append(env_cpu)
        speedups = {t: rates[t] / rates[threads[0]] for t in threads}
    largest = max(args.envs)
    for t in threads:
        if t > 1 and threads[0] == 1:
            print(
                f"efficiency at T={t}: {speedups[t] / t:.2f} ({largest} envs; goal >= 0.85 at T=2)"
            )
    if len(per_thread_t1) > 1:
        spread = max(per_thread_t1) / min(per_thread_t1) - 1
        cpu_spread = max(per_cpu_t1) / min(per_cpu_t1) - 1
        span = f"{min(args.envs)}..{largest} envs"
        print(f"per-thread rate spread at T=1 over {span}: {spread:.0%} (goal <= 15%)")
        print(f"robot-steps per CPU-second at T=1 over {span}: spread {cpu_spread:.0%}")
    if ratio_first is not None:
        print(f"ratio env/raw at {min(args.envs)} envs: {ratio_first:.2f} (target >= 0.85 at 64)")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS after {largest} envs: {peak_mib:.0f} MiB")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
