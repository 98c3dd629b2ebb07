"""Does specialising pay? Experts trained at three corners of the design box, each scored on all three.

Each expert trains with PPO (MuJoCo backend) on designs drawn uniformly from a small box
around its corner; then every expert is scored on held-out designs around every corner with
the level-search protocol (`pec.maths.protocols.level_search` on the backend's `probe_levels`:
highest obstacle level passed, 0..74). The table is the transfer matrix: row = where the
expert trained, column = where it is scored. Trainings run as parallel processes
(`--workers`), one torch thread each.

`--hold_design_inputs` scores every expert a second time with its design inputs (the
observation's morphology columns, one per design axis) held at the expert's own training
mean: the actor's normaliser gets the training designs' mean and a huge std on those
columns, so whatever the design, the network sees them as it saw its training designs. Comparing the two
matrices tells whether the off-corner collapse comes from the design inputs (inputs many
training standard deviations out) or from the physics.

    nice -n 10 .venv/bin/python benchmarks/bench_transfer_matrix.py --iterations 400
    nice -n 10 .venv/bin/python benchmarks/bench_transfer_matrix.py --hold_design_inputs
    nice -n 10 .venv/bin/python benchmarks/bench_transfer_matrix.py --hold_design_inputs \
        --design_inputs fixed        # design columns normalised over the box
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

CORNERS = {  # [GCR, spcf], well inside the box [0.75, 0.89] x [0.001, 0.010]
    "low GCR, soft": (0.77, 0.002),
    "high GCR, soft": (0.87, 0.002),
    "high GCR, stiff": (0.87, 0.009),
}
HALF_WIDTH = (0.01, 0.0005)  # designs around a corner: corner ± this


def around(corner: tuple[float, float], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gcr = rng.uniform(corner[0] - HALF_WIDTH[0], corner[0] + HALF_WIDTH[0], n)
    spcf = rng.uniform(corner[1] - HALF_WIDTH[1], corner[1] + HALF_WIDTH[1], n)
    return gcr, spcf


HELD_STD = 1e6  # a normaliser std this large maps any design to the training mean (0)


def training_design_inputs(gcr: np.ndarray, spcf: np.ndarray, settings: dict[str, Any]) -> Any:
    """The design columns of the observation over the training designs (one row per env)."""
    from pec.backends.ballu.design_inputs import design_columns
    from pec.backends.mujoco.backend import parse_settings
    from pec.backends.mujoco.env import BalluVecEnv

    env = BalluVecEnv(
        gcr.size, parse_settings(settings).task, gcr_values=gcr, spcf_values=spcf, eval_mode=True
    )
    return env.get_observations()["policy"][:, design_columns()]


def hold_design_inputs(checkpoint: Path, out: Path, inputs: Any) -> dict[str, list[float]]:
    """A copy of `checkpoint` whose actor sees the design columns at their training mean.

    `inputs`: the design columns over the training designs. The normaliser's mean becomes
    their mean and its std HELD_STD, so any design reaches the network as the training mean
    did (for a running normaliser its own mean is that already). Returns the training mean
    and the std the normaliser had (the env's [-1, 1] box units).
    """
    import torch

    from pec.backends.ballu.design_inputs import design_columns

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    actor = state["actor_state_dict"]
    columns = design_columns()
    mean = inputs.mean(0)
    held = {
        "mean": [float(v) for v in mean],
        "std": [float(actor["obs_normalizer._std"][0, c]) for c in columns],
    }
    for i, c in enumerate(columns):
        actor["obs_normalizer._mean"][0, c] = mean[i]
        actor["obs_normalizer._std"][0, c] = HELD_STD
    torch.save(state, out)
    return held


def train_and_score(job: dict[str, Any]) -> dict[str, Any]:
    """One expert: train at its corner, then level-search scores on every corner's designs."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from pec.backends.base import ProbeRequest, TrainRequest
    from pec.backends.mujoco import MujocoBackend
    from pec.maths.protocols import level_search

    backend = MujocoBackend()
    corner = tuple(job["corner"])
    gcr, spcf = around(corner, job["envs"], job["seed"])
    t0 = time.time()
    outcome = backend.train(
        TrainRequest(
            gcr=gcr,
            spcf=spcf,
            start_level=0,
            max_iterations=job["iterations"],
            seed=job["seed"],
            device="cpu",
            work_dir=Path(job["work_dir"]),
            settings=job["settings"],
        )
    )
    train_s = time.time() - t0

    def score(checkpoint: Path) -> dict[str, list[int]]:
        scores: dict[str, list[int]] = {}
        for name, target in CORNERS.items():
            g, s = around(target, job["designs"], 1000 + job["seed"])

            def probe(
                idx: np.ndarray, levels: np.ndarray, g: np.ndarray = g, s: np.ndarray = s
            ) -> list[bool]:
                request = ProbeRequest(checkpoint, g[idx], s[idx], levels, 0, "cpu")
                return backend.probe_levels(request)

            scores[name] = level_search(probe, len(g))
        return scores

    result: dict[str, Any] = {
        "expert": job["name"],
        "train_s": train_s,
        "training_mean_level": outcome.metrics.get("mean_level"),
        "scores": score(outcome.best_checkpoint),
    }
    if job["hold"]:
        held = Path(job["work_dir"]) / "held_design_inputs.pt"
        inputs = training_design_inputs(gcr, spcf, job["settings"])
        result["held_normaliser"] = hold_design_inputs(outcome.best_checkpoint, held, inputs)
        result["scores_held"] = score(held)
    return result


def print_matrix(title: str, results: list[dict[str, Any]], key: str) -> np.ndarray:
    """The matrix (row: trained at, column: scored at), its diagonal and off-corner means."""
    names = list(CORNERS)
    matrix = np.asarray([[np.mean(r[key][c]) for c in names] for r in results])
    print(title)
    print(f"{'trained at / scored at':<24}" + "".join(f"{c:>18}" for c in names))
    for r, row in zip(results, matrix, strict=True):
        print(f"{r['expert']:<24}" + "".join(f"{v:>18.2f}" for v in row))
    off = [(matrix[i].sum() - matrix[i, i]) / (len(names) - 1) for i in range(len(names))]
    for name, own, away in zip(names, np.diag(matrix), off, strict=True):
        share = away / own if own > 0 else float("nan")
        print(f"{name}: own corner {own:.2f}, other corners {away:.2f} (ratio {share:.2f})")
    return matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=400, help="PPO iterations per expert")
    parser.add_argument("--envs", type=int, default=128)
    parser.add_argument("--designs", type=int, default=16, help="held-out designs per corner")
    parser.add_argument("--warmup", type=int, default=20, help="curriculum/goal warm-ups")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--hold_design_inputs",
        action="store_true",
        help="also score each expert with its design inputs held at its training mean",
    )
    parser.add_argument(
        "--design_inputs",
        choices=["fixed", "running"],
        default="running",
        help="ppo.design_inputs: box normalisation (fixed) or each policy's own (running)",
    )
    parser.add_argument("--json", help="write the matrix here")
    parser.add_argument("--plot", help="write a heatmap here")
    args = parser.parse_args()
    settings = {
        "task": {
            "curriculum_warmup_iterations": args.warmup,
            "goal_warmup_iterations": args.warmup,
            "goal_ramp_iterations": args.warmup,
        },
        "ppo": {"design_inputs": args.design_inputs},
    }
    with tempfile.TemporaryDirectory(prefix="pec-transfer-") as tmp:
        jobs = [
            {
                "name": name,
                "corner": corner,
                "envs": args.envs,
                "iterations": args.iterations,
                "designs": args.designs,
                "seed": args.seed + i,
                "settings": settings,
                "work_dir": str(Path(tmp) / f"expert_{i}"),
                "hold": args.hold_design_inputs,
            }
            for i, (name, corner) in enumerate(CORNERS.items())
        ]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            results = list(pool.map(train_and_score, jobs))
    names = list(CORNERS)
    matrix = print_matrix(
        f"transfer matrix: mean highest level passed (level search, {args.designs} designs per "
        f"corner), experts {args.iterations} PPO iterations x {args.envs} envs",
        results,
        "scores",
    )
    held_matrix = None
    if args.hold_design_inputs:
        held_matrix = print_matrix(
            "the same experts, design inputs held at each expert's training mean",
            results,
            "scores_held",
        )
        for r in results:
            normaliser = r["held_normaliser"]
            mean = ", ".join(f"{v:+.3f}" for v in normaliser["mean"])
            std = ", ".join(f"{v:.4f}" for v in normaliser["std"])
            print(f"{r['expert']}: design inputs' training mean [{mean}], std [{std}]")
        off = ~np.eye(len(names), dtype=bool)
        print(
            f"off-corner mean: as is {matrix[off].mean():.2f}, held {held_matrix[off].mean():.2f}; "
            f"own corner: as is {np.diag(matrix).mean():.2f}, held "
            f"{np.diag(held_matrix).mean():.2f}"
        )
    print("train seconds:", [round(r["train_s"], 1) for r in results])
    if args.json:
        payload: dict[str, Any] = {
            "corners": CORNERS,
            "matrix": matrix.tolist(),
            "results": results,
        }
        if held_matrix is not None:
            payload["matrix_held_design_inputs"] = held_matrix.tolist()
        Path(args.json).write_text(json.dumps(payload, indent=2))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, ax = plt.subplots(figsize=(5.5, 4.2))
        image = ax.imshow(matrix, cmap="viridis")
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{matrix[i, j]:.1f}", ha="center", va="center", color="w")
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("scored at")
        ax.set_ylabel("trained at")
        ax.set_title("transfer matrix: mean highest level passed")
        figure.colorbar(image)
        figure.tight_layout()
        figure.savefig(args.plot, dpi=120)
        plt.close(figure)


if __name__ == "__main__":
    main()
