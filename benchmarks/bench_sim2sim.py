"""Sim-to-sim: does a policy behave the same on the MuJoCo and the Isaac Lab backends?

Two measurements of the same robot (`pec.backends.ballu.body`) in both simulators:

1. **Trajectory check** (`--trajectory`, on by default): the same fixed open-loop action
   sequence from the same start state on both backends' envs, without an obstacle (the env
   stands where no obstacle is) and with one (level `--obstacle-level`); the root's x, z and
   pitch are recorded every control step. The sequence is a sine gait (legs in anti-phase,
   a different period per design), or with `--actions-from CKPT` the actions a trained
   policy took on MuJoCo in the same scenario (recorded once, then replayed open loop in
   both simulators: a gait that walks forward and meets the obstacle). Printed: the largest divergence per quantity and, per env,
   how many control steps all three stay within the tolerance (`--tol-x/--tol-z/--tol-pitch`;
   goal: >= 100 of 400). The check runs at every leg length of `--legs` (default: the
   nominal robot, femur 0.480 m / tibia 0.443 m, then femur = tibia = 0.25 and 0.45 m, in
   [0.20, 0.48] m): the robots of every given length share one scene per simulator, and the
   table and the verdict are printed per leg length. With `--actions-from` and leg lengths the
   checkpoint must observe the leg (a 3-D run's expert, 30 observations).
2. **Transfer** (`--transfer`): experts scored by the level-search protocol
   (`pec.maths.protocols.level_search` on `probe_levels`) on their own designs, at home
   (the backend they trained on) and away; the transfer ratio away / home per expert (means
   over designs) and the per-design distribution. MuJoCo experts come from `--mujoco-checkpoints`
   or, if none is given, one is trained here (`--iterations` on `--train-envs` designs around
   `--gcr/--spcf`, the bench_learning settings); Isaac Lab experts (the reverse direction)
   from `--isaaclab-checkpoints` (e.g. the expert `bench_isaaclab.py --learn` writes).
   Each expert's own designs are `--designs` held-out designs around its design point.

Isaac Lab runs on the CPU here at ~700 env-steps/s, so keep the design counts small.

    nice -n 10 .venv/bin/python benchmarks/bench_sim2sim.py --trajectory
    nice -n 10 .venv/bin/python benchmarks/bench_sim2sim.py --trajectory --legs 0.25 0.45
    nice -n 10 .venv/bin/python benchmarks/bench_sim2sim.py --transfer --iterations 600 \\
        --designs 8 --work-dir /tmp/sim2sim
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pec.backends.base import TrainRequest
from pec.backends.isaaclab import IsaacLabBackend
from pec.backends.mujoco import MujocoBackend
from pec.backends.mujoco.backend import close_env
from pec.maths.curriculum import MAX_LEVEL, level_height
from pec.maths.design_space import DEFAULT_LEG_RANGE
from pec.maths.protocols import level_search

# Designs of the trajectory check: (GCR, spcf) spread over the design box.
TRAJECTORY_DESIGNS = ((0.77, 0.002), (0.80, 0.008), (0.85, 0.005), (0.88, 0.009))
NO_OBSTACLE = -1  # scenario marker: the env stands where there is no obstacle at all
# The trajectory check's tolerance (root x m, z m, pitch rad) and its goal: every env within
# it for at least GOAL_STEPS control steps.
TOLERANCE = (0.05, 0.02, 0.05)
GOAL_STEPS = 100
# Leg lengths checked by default: None is the nominal robot (femur 0.480 m, tibia 0.443 m);
# the others are femur = tibia = leg, as a 3-D run's robots.
DEFAULT_LEGS: tuple[float | None, ...] = (None, 0.25, 0.45)


@dataclass(frozen=True)
class TrajectoryEnvs:
    """The envs of one trajectory-check scene: every design without and with the obstacle,
    once per leg length (`leg` None: the nominal robot), with each env's gait period."""

    gcr: np.ndarray
    spcf: np.ndarray
    scenario: np.ndarray  # NO_OBSTACLE or the obstacle level, per env
    periods: np.ndarray  # control steps per sine-gait cycle, per env
    leg: np.ndarray | None  # leg length per env (m), or None


def trajectory_envs(
    legs: Sequence[float] | None,
    obstacle_level: int,
    designs: Sequence[tuple[float, float]] = TRAJECTORY_DESIGNS,
) -> TrajectoryEnvs:
    """Every design without, then with, the obstacle, repeated per leg length of `legs`."""
    d = np.asarray(designs, dtype=np.float64)
    k = len(d)
    copies = 1 if legs is None else len(legs)
    return TrajectoryEnvs(
        gcr=np.tile(d[:, 0], 2 * copies),
        spcf=np.tile(d[:, 1], 2 * copies),
        scenario=np.tile(np.repeat([NO_OBSTACLE, obstacle_level], k), copies),
        periods=np.tile(np.linspace(16, 28, k), 2 * copies),
        leg=None if legs is None else np.repeat(np.asarray(legs, dtype=np.float64), 2 * k),
    )


def gait(steps: int, n: int, periods: np.ndarray) -> np.ndarray:
    """(steps, n, 2) open-loop actions: sine per leg in [0, 1], legs in anti-phase."""
    t = np.arange(steps)[:, None]
    phase = 2 * math.pi * t / periods[None, :]
    left = 0.5 + 0.5 * np.sin(phase)
    right = 0.5 + 0.5 * np.sin(phase + math.pi)
    return np.stack([left, right], -1)


def recorded_actions(
    checkpoint: Path,
    gcr: np.ndarray,
    spcf: np.ndarray,
    scenario: np.ndarray,
    steps: int,
    leg: np.ndarray | None = None,
) -> np.ndarray:
    """(steps, n, 2) raw actions a policy takes, closed loop, on the MuJoCo backend."""
    from pec.backends.mujoco.model import OBSTACLE_GEOM_OFFSET

    env, actor = MujocoBackend().policy_env(
        checkpoint, {"task": _task(steps)}, gcr, spcf, 0, 0, "cpu", leg
    )
    try:
        env.set_levels(np.maximum(scenario, 0))
        far = np.nonzero(scenario == NO_OBSTACLE)[0]
        env.sim.model.geom_pos[OBSTACLE_GEOM_OFFSET + far, 0] = 1e3
        env._obs = env._compute_obs()  # the observation of the scene as it now stands
        out = np.zeros((steps, len(gcr), 2), dtype=np.float32)
        obs = env.get_observations()
        with torch.inference_mode():
            for i in range(steps):
                action = actor(obs)
                out[i] = action.numpy()
                obs, _, _, _ = env.step(action)
        return out
    finally:
        close_env(env)


def _task(steps: int) -> dict[str, object]:
    # one episode longer than the check (no time-out reset inside it), no curriculum moves
    return {
        "episode_steps": steps + 1,
        "curriculum_warmup_iterations": 10**6,
        "replay_probability": 0.0,
    }


def mujoco_roots(
    gcr: np.ndarray,
    spcf: np.ndarray,
    scenario: np.ndarray,
    actions: np.ndarray,
    leg: np.ndarray | None = None,
) -> np.ndarray:
    """(steps + 1, n, 3) root x, z, pitch on the MuJoCo backend's env (leg: per env, m)."""
    from pec.backends.mujoco.env import BalluVecEnv
    from pec.backends.mujoco.model import OBSTACLE_GEOM_OFFSET
    from pec.backends.mujoco.settings import BalluTaskSettings

    steps, n = actions.shape[:2]
    task = BalluTaskSettings.model_validate(_task(steps))
    env = BalluVecEnv(n, task, gcr_values=gcr, spcf_values=spcf, leg_values=leg, seed=0)
    env.set_levels(np.maximum(scenario, 0))
    far = np.nonzero(scenario == NO_OBSTACLE)[0]
    env.sim.model.geom_pos[OBSTACLE_GEOM_OFFSET + far, 0] = 1e3  # no obstacle anywhere near
    out = np.zeros((steps + 1, n, 3))
    out[0] = env.sim.qpos[:, :3]
    for i in range(steps):
        env.step(torch.as_tensor(actions[i], dtype=torch.float32))
        out[i + 1] = env.sim.qpos[:, :3]
    return out


def isaaclab_roots(
    gcr: np.ndarray,
    spcf: np.ndarray,
    scenario: np.ndarray,
    actions: np.ndarray,
    leg: np.ndarray | None = None,
) -> np.ndarray:
    """(steps + 1, n, 3) root x, z, pitch on the Isaac Lab backend's env (CPU; leg: per
    env, m, each env's robot converted from its own leg length)."""
    from pec.backends.isaaclab.assets import ROW_SPACING, ensure_assets
    from pec.backends.isaaclab.settings import load_settings
    from pec.backends.isaaclab.task import make_vec_env

    steps, n = actions.shape[:2]
    s = load_settings({"task": _task(steps)})
    venv = make_vec_env(
        task=s.task,
        gcr=gcr,
        spcf=spcf,
        start_level=0,
        seed=0,
        device="cpu",
        physics="newton",
        newton=s.newton,
        assets=ensure_assets(),
        leg=leg,
    )
    env = venv.env
    try:
        env.levels[:] = np.maximum(scenario, 0)
        env._initial_reset = True  # place every env at its level, no level rule
        env._reset_idx(torch.arange(n))
        env._initial_reset = False
        far = np.nonzero(scenario == NO_OBSTACLE)[0]
        if far.size:  # anchor those envs beside the rows: ground only
            pose = torch.zeros((far.size, 7))
            pose[:, 1] = 2 * ROW_SPACING
            pose[:, 2] = s.task.init_root_height
            pose[:, 6] = 1.0
            env.robot.write_root_pose_to_sim_index(
                root_pose=pose, env_ids=torch.as_tensor(far).int()
            )
            env._rows[far] = -1
        env.scene.write_data_to_sim()
        env.sim.forward()
        env.robot.update(0.0)
        out = np.zeros((steps + 1, n, 3))
        out[0] = env.planar_state()[0][:, :3].numpy()
        for i in range(steps):
            venv.step(torch.as_tensor(actions[i], dtype=torch.float32))
            out[i + 1] = env.planar_state()[0][:, :3].numpy()
        return out
    finally:
        venv.close()


def steps_within(diff: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """Per env: control steps before the first one where any quantity leaves its tolerance."""
    outside = (np.abs(diff) > tol).any(-1)  # (steps + 1, n)
    first: np.ndarray = np.where(outside.any(0), outside.argmax(0), outside.shape[0])
    return first - 1  # step 0 is the shared start state


def root_trajectories(
    envs: TrajectoryEnvs, actions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Both simulators' (steps + 1, n, 3) root x, z, pitch under `actions`, and their wall s."""
    t0 = time.time()
    mj = mujoco_roots(envs.gcr, envs.spcf, envs.scenario, actions, envs.leg)
    t1 = time.time()
    il = isaaclab_roots(envs.gcr, envs.spcf, envs.scenario, actions, envs.leg)
    return mj, il, (t1 - t0, time.time() - t1)


def leg_name(leg: float | None) -> str:
    return "nominal (femur 0.480 m, tibia 0.443 m)" if leg is None else f"{leg:.3f} m"


def trajectory_check(args: argparse.Namespace) -> dict[str, Any]:
    tol = np.array([args.tol_x, args.tol_z, args.tol_pitch])
    legs: list[float | None] = list(dict.fromkeys(args.legs))  # in order, once each
    numeric = [leg for leg in legs if leg is not None]
    # one scene per simulator for the nominal robot, one for every other leg length together
    scenes: list[list[float] | None] = ([None] if None in legs else []) + (
        [numeric] if numeric else []
    )
    per_leg: dict[float | None, dict[str, Any]] = {}
    source = "sine gait"
    for scene in scenes:
        envs = trajectory_envs(scene, args.obstacle_level)
        if args.actions_from:
            actions = recorded_actions(
                Path(args.actions_from), envs.gcr, envs.spcf, envs.scenario, args.steps, envs.leg
            )
            source = f"actions recorded from {args.actions_from} on MuJoCo"
        else:
            actions = gait(args.steps, len(envs.gcr), envs.periods)
        mj, il, seconds = root_trajectories(envs, actions)
        diff = il - mj
        within = steps_within(diff, tol)
        size = 2 * len(TRAJECTORY_DESIGNS)
        for i, leg in enumerate([None] if scene is None else scene):
            part = slice(i * size, (i + 1) * size)
            per_leg[leg] = {
                "gcr": envs.gcr[part],
                "spcf": envs.spcf[part],
                "scenario": envs.scenario[part],
                "mj": mj[:, part],
                "il": il[:, part],
                "diff": diff[:, part],
                "within": within[part],
                "seconds": seconds,
            }
    print(
        f"trajectory check: {args.steps} control steps, {source}, tolerance x {args.tol_x} m,"
        f" z {args.tol_z} m, pitch {args.tol_pitch} rad, leg lengths "
        + ", ".join(leg_name(leg) for leg in legs)
    )
    results = []
    for leg in legs:
        got = per_leg[leg]
        gcr, spcf, scenario = got["gcr"], got["spcf"], got["scenario"]
        mj, il, diff, within = got["mj"], got["il"], got["diff"], got["within"]
        print(
            f"leg {leg_name(leg)} (scene: MuJoCo {got['seconds'][0]:.0f} s,"
            f" Isaac Lab {got['seconds'][1]:.0f} s)"
        )
        print(
            f"{'design':>15} {'obstacle':>9} {'final x mj':>10} {'final x il':>10}"
            f" {'max|dx|':>8} {'max|dz|':>8} {'max|dpitch|':>11} {'steps within':>12}"
        )
        rows = []
        for e in range(len(gcr)):
            obstacle = (
                "none" if scenario[e] == NO_OBSTACLE else f"{level_height(scenario[e]):.3f} m"
            )
            dmax = np.abs(diff[:, e]).max(0)
            print(
                f"  ({gcr[e]:.2f}, {spcf[e]:.3f}) {obstacle:>9} {mj[-1, e, 0]:10.3f}"
                f" {il[-1, e, 0]:10.3f} {dmax[0]:8.4f} {dmax[1]:8.4f} {dmax[2]:11.4f}"
                f" {within[e]:12d}"
            )
            rows.append(
                {
                    "gcr": float(gcr[e]),
                    "spcf": float(spcf[e]),
                    "obstacle_level": int(scenario[e]),
                    "max_abs_diff": dmax.tolist(),
                    "steps_within": int(within[e]),
                    "final_x": [float(mj[-1, e, 0]), float(il[-1, e, 0])],
                }
            )
        # divergence over time: the median env's |dx| at a few checkpoints
        marks = [s for s in (10, 50, 100, 200, 300, args.steps) if s <= args.steps]
        print("  median over envs of |dx| / |dz| / |dpitch| at control step:")
        for s in marks:
            med = np.median(np.abs(diff[s]), 0)
            print(f"    {s:4d}: {med[0]:.4f} m  {med[1]:.4f} m  {med[2]:.4f} rad")
        worst = int(within.min())
        print(
            f"  leg {leg_name(leg)}: every env within tolerance for {worst} control steps"
            f" (goal >= {GOAL_STEPS}): {'met' if worst >= GOAL_STEPS else 'NOT met'}"
        )
        results.append(
            {"leg": leg, "rows": rows, "min_steps_within": worst, "seconds": got["seconds"]}
        )
    print(
        "steps within tolerance per leg length: "
        + ", ".join(f"{leg_name(r['leg'])}: {r['min_steps_within']}" for r in results)
    )
    return {"legs": results, "min_steps_within": min(r["min_steps_within"] for r in results)}


# ------------------------------------------------------------------------ transfer


def around(point: tuple[float, float], n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) designs drawn around a design point (bench_learning's spread)."""
    return np.stack(
        [
            np.clip(rng.normal(point[0], 0.01, n), 0.75, 0.89),
            np.clip(rng.normal(point[1], 0.0005, n), 0.001, 0.010),
        ],
        1,
    )


def search_ceiling(home_levels: list[int], headroom: int = 10) -> int:
    """The smallest bisection ceiling 2^k - 2 (k rounds) above every home level + headroom.

    A level search over 0..74 takes 7 rounds of one 400-step episode; on Isaac Lab on this
    CPU a round costs minutes, so the away search stops at a ceiling the home scores make
    safe (a design scoring the ceiling away is reported at it; the tables say so).
    """
    need = max(home_levels) + headroom + 2
    return int(min(MAX_LEVEL, 2 ** math.ceil(math.log2(need)) - 2))


def search(
    backend: MujocoBackend,
    checkpoint: Path,
    designs: np.ndarray,
    seed: int,
    top: int = MAX_LEVEL,
) -> list[int]:
    """Highest level passed per design (level search, 0..top) on this backend.

    `pec.maths.protocols.level_search` over `play_probes`, the primitive of the
    backend's `probe_levels`, on ONE env for all designs: a job's `probe_levels` builds an
    env per search round, which costs ~40 s per round on Isaac Lab on this CPU. Designs
    that are already decided replay their last probe level (envs are independent, so this
    changes nothing for the others).
    """
    env, actor = backend.policy_env(
        checkpoint, {}, designs[:, 0].copy(), designs[:, 1].copy(), 0, seed, "cpu"
    )
    current = np.zeros(len(designs), dtype=np.int64)

    def probe(idx: np.ndarray, levels: np.ndarray) -> list[bool]:
        current[idx] = levels
        env.episodes_done[:] = 0  # a fresh env's count: the probe plays until each env ends one
        passed = backend.play_probes(env, actor, current.copy())
        return [passed[i] for i in idx]

    try:
        return level_search(probe, len(designs), top)
    finally:
        close_env(env)


def train_mujoco_expert(args: argparse.Namespace, work: Path) -> Path:
    rng = np.random.default_rng(args.seed)
    train = around((args.gcr, args.spcf), args.train_envs, rng)
    warm = args.warmup
    request = TrainRequest(
        gcr=train[:, 0].copy(),
        spcf=train[:, 1].copy(),
        start_level=0,
        max_iterations=args.iterations,
        seed=args.seed,
        device="cpu",
        work_dir=work / "mujoco_expert",
        settings={
            "task": {
                "curriculum_warmup_iterations": warm,
                "goal_warmup_iterations": warm,
                "goal_ramp_iterations": warm,
            }
        },
    )
    t0 = time.time()

    def progress(it: int, total: int, m: dict[str, float]) -> None:
        if it % 100 == 0 or it == total:
            print(f"  it {it}/{total} {time.time() - t0:.0f}s level {m['mean_level']:.2f}")

    outcome = MujocoBackend().train(request, on_progress=progress)
    print(f"trained a MuJoCo expert: {args.iterations} iterations in {time.time() - t0:.0f} s")
    return outcome.best_checkpoint


def transfer(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    mujoco, isaac = MujocoBackend(), IsaacLabBackend()
    experts: list[tuple[str, Path, MujocoBackend, MujocoBackend]] = []
    mujoco_ckpts = [Path(p) for p in args.mujoco_checkpoints]
    if not mujoco_ckpts and not args.isaaclab_checkpoints:
        mujoco_ckpts = [train_mujoco_expert(args, work)]
    experts += [("mujoco", p, mujoco, isaac) for p in mujoco_ckpts]
    experts += [("isaaclab", Path(p), isaac, mujoco) for p in args.isaaclab_checkpoints]
    rng = np.random.default_rng(args.seed + 1)
    designs = around((args.gcr, args.spcf), args.designs, rng)  # held-out, own designs
    results = []
    print(
        f"transfer: level search 0..{MAX_LEVEL} on {len(designs)} designs around"
        f" ({args.gcr}, {args.spcf})"
    )
    print(f"{'trained on':>10} {'home':>7} {'away':>7} {'ratio':>6} {'home s':>7} {'away s':>7}")
    for home_name, ckpt, home, away in experts:
        t0 = time.time()
        # home and away over the same levels 0..top (bisections over different ranges can
        # disagree where a policy passes a level but fails a lower one)
        if home_name == "mujoco":
            top = search_ceiling(search(home, ckpt, designs, args.seed))
        else:  # the home search is the costly one: search Isaac Lab's experts over 0..74
            top = MAX_LEVEL
        home_levels = search(home, ckpt, designs, args.seed, top)
        t1 = time.time()
        away_levels = search(away, ckpt, designs, args.seed, top)
        t2 = time.time()
        h, a = np.array(home_levels, float), np.array(away_levels, float)
        ratio = a.mean() / h.mean() if h.mean() > 0 else float("nan")
        print(
            f"{home_name:>10} {h.mean():7.2f} {a.mean():7.2f} {ratio:6.2f} {t1 - t0:7.0f}"
            f" {t2 - t1:7.0f}   ({ckpt})"
        )
        per_design = np.where(h > 0, a / np.maximum(h, 1), np.nan)
        print(f"    home levels {home_levels} (search 0..{top})")
        print(f"    away levels {away_levels} (search 0..{top})")
        q: list[float] = (
            np.nanpercentile(per_design, [0, 25, 50, 75, 100]).tolist()
            if np.isfinite(per_design).any()
            else []
        )
        print(
            "    per-design away/home: min / q1 / median / q3 / max = "
            + " / ".join(f"{v:.2f}" for v in q)
            + f"; designs at >= 0.9: {int(np.sum(per_design >= 0.9))} of {int(np.isfinite(per_design).sum())}"
        )
        results.append(
            {
                "trained_on": home_name,
                "checkpoint": str(ckpt),
                "home": home_levels,
                "away": away_levels,
                "ratio": ratio,
                "search_ceiling": top,
                "seconds": [t1 - t0, t2 - t1],
            }
        )
    return {"designs": designs.tolist(), "experts": results}


def leg_argument(text: str) -> float | None:
    """One `--legs` value: 'nominal' (None) or a leg length in metres inside the range."""
    if text == "nominal":
        return None
    lo, hi = DEFAULT_LEG_RANGE
    try:
        leg = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'nominal' or a number") from None
    if not lo <= leg <= hi:
        raise argparse.ArgumentTypeError(f"leg length {leg} m is outside [{lo}, {hi}] m")
    return leg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectory", action="store_true", help="run the trajectory check")
    parser.add_argument("--transfer", action="store_true", help="run the transfer measurement")
    parser.add_argument("--steps", type=int, default=400, help="control steps (trajectory)")
    parser.add_argument("--obstacle-level", type=int, default=10)
    parser.add_argument("--actions-from", default=None, help="checkpoint: replay its actions")
    parser.add_argument(
        "--legs",
        nargs="+",
        type=leg_argument,
        default=list(DEFAULT_LEGS),
        help="leg lengths of the trajectory check: 'nominal' (the default robot) or femur ="
        f" tibia in metres within {list(DEFAULT_LEG_RANGE)} (default: nominal 0.25 0.45)",
    )
    parser.add_argument("--tol-x", type=float, default=TOLERANCE[0], help="m")
    parser.add_argument("--tol-z", type=float, default=TOLERANCE[1], help="m")
    parser.add_argument("--tol-pitch", type=float, default=TOLERANCE[2], help="rad")
    parser.add_argument("--mujoco-checkpoints", nargs="*", default=[])
    parser.add_argument("--isaaclab-checkpoints", nargs="*", default=[])
    parser.add_argument("--gcr", type=float, default=0.82, help="design point: GCR")
    parser.add_argument("--spcf", type=float, default=0.0055, help="design point: spcf")
    parser.add_argument("--designs", type=int, default=8, help="held-out designs per expert")
    parser.add_argument("--iterations", type=int, default=600, help="MuJoCo expert training")
    parser.add_argument("--train-envs", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=20, help="curriculum/goal warm-up its")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    if not (args.trajectory or args.transfer):
        args.trajectory = True
    torch.set_num_threads(1)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_sim2sim_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    out: dict[str, Any] = {}
    if args.trajectory:
        out["trajectory"] = trajectory_check(args)
    if args.transfer:
        out["transfer"] = transfer(args, work)
    (work / "sim2sim.json").write_text(json.dumps(out, indent=2))
    print(f"total wall time {time.time() - t0:.0f} s; results in {work / 'sim2sim.json'}")


if __name__ == "__main__":
    main()
