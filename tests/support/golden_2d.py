"""A 2-D run's files through every step that writes one, for the byte-identity check.

`write_golden_run(root)` drives the run layer's own steps (init, training samples and job
specs, frontier candidates, scores, refit, a final evaluation's summary, the bundle's router
maths) on a local store with fixed, hand-checkable levels in place of simulated ones, and
`digests(root)` hashes every file it wrote. tests/data/golden_2d.json holds the digests the
code of main produced before design spaces gained axes (regenerate only on purpose:
``python -m support.golden_2d`` from tests/, with the repository on PYTHONPATH).

Two values are normalised before hashing, because they are not this code's output: the
store's absolute folder (in job specs) and the config's content hash (in the state; any
new config key of another change moves it; the test checks it separately). Job specs are
stored without ``threads`` (this machine's cores) and lock files are left out.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pec.evaluation.designs_file import dump_designs, uniform_designs
from pec.evaluation.final_eval_jobs import final_eval_spec
from pec.evaluation.final_eval_summary import write_summary
from pec.iteration.frontier import frontier_candidates, prepare_evaluation, write_scores
from pec.iteration.refit import refit_iteration
from pec.iteration.run_setup import initialise_run
from pec.iteration.training import prepare_training
from pec.jobs.spec import StoreSpec
from pec.maths.routing import route
from pec.maths.score_routing import evidence_from, route_by_scores
from pec.runs.config import PECConfig, build_config
from pec.runs.run import Run, make_run
from pec.runs.store import LocalStore

GOLDEN_FILE = Path(__file__).resolve().parents[1] / "data" / "golden_2d.json"
STORE_PLACEHOLDER = "<STORE>"
HASH_PLACEHOLDER = "<CONFIG_HASH>"

CONFIGS: dict[str, dict[str, Any]] = {
    "fps": {
        "K": 3,
        "N_init": 6,
        "init_pool_size": 400,
        "lloyd_iterations": 3,
        "num_envs": 8,
        "F": 5,
        "pool_factor": 4,
        "auto_switch_iter": 1,
        "seed": 7,
    },
    "grid": {
        "K": 4,
        "N_init": 4,
        "init_strategy": "grid",
        "target_init_coverage": 0.3,
        "num_envs": 5,
        "F": 6,
        "pool_factor": 3,
        "sampling_mode": "frontier",
        "min_designs": 3,
        "seed": 3,
    },
    "explicit": {
        "K": 2,
        "N_init": 1,
        "centers": [[0.8, 0.004], [0.86, 0.008]],
        "num_envs": 3,
        "F": 4,
        "pool_factor": 2,
        "sampling_mode": "border",
    },
}


def levels_for(k: int, n: int, iteration: int) -> list[int]:
    """Fixed levels: expert k scores (3k + 5i + iteration) mod 11 on candidate i."""
    return [(3 * k + 5 * i + iteration) % 11 for i in range(n)]


def _write_json(run: Run, key: str, data: Any) -> None:
    if isinstance(data, dict):
        data.pop("threads", None)  # cores of this machine // experts in flight: not data
    run.store.write_bytes(key, json.dumps(data, indent=2, sort_keys=True).encode())


def drive(run: Run, iterations: int = 2) -> None:
    state, version, _ = initialise_run(run)
    for iteration in range(iterations):
        for k in range(state.K):
            spec = prepare_training(run, state, k)
            _write_json(run, f"golden/train_spec_{k}_{iteration}.json", spec.model_dump())
        checkpoint = run.store.uri(f"golden/ckpt_{iteration}.pt")
        run.store.write_bytes(f"golden/ckpt_{iteration}.pt", b"checkpoint")
        with_ckpt = state.model_copy(
            update={
                "experts": [e.model_copy(update={"checkpoint": checkpoint}) for e in state.experts]
            }
        )
        selection = frontier_candidates(run, state)
        for k in range(state.K):
            spec = prepare_evaluation(run, with_ckpt, k, selection.designs)
            assert spec is not None
            _write_json(run, f"golden/eval_spec_{k}_{iteration}.json", spec.model_dump())
        levels: dict[int, list[int] | None] = {
            k: levels_for(k, len(selection.designs), iteration) for k in range(state.K)
        }
        levels[state.K - 1] = None if iteration == 1 and state.K > 2 else levels[state.K - 1]
        write_scores(run, state, selection, levels)
        state, version = refit_iteration(run, state, version)
    designs = uniform_designs(run.space, 9, seed=11)
    run.store.write_bytes("golden/designs.json", dump_designs(designs))
    final_levels: dict[int, list[int] | None] = {
        k: levels_for(k + 1, len(designs), 5) for k in range(state.K)
    }
    write_summary(run, state, designs, "uniform9", final_levels, 3, 2)
    checkpoint = run.store.uri("golden/ckpt_0.pt")
    spec = final_eval_spec(run, state, 0, checkpoint, designs, "uniform9", 3, 2, threads=1)
    _write_json(run, "golden/final_spec.json", spec.model_dump())
    points = np.asarray([[d.GCR, d.spcf] for d in designs])
    evidence = evidence_from([(points[:5], [levels_for(k, 5, 1) for k in range(state.K)])], state.K)
    _write_json(
        run,
        "golden/routes.json",
        {
            "nearest": route(points, state.expert_mus(), run.space).tolist(),
            "scores": route_by_scores(points, evidence, state.expert_mus(), run.space).tolist(),
        },
    )


def write_golden_run(root: Path, name: str) -> PECConfig:
    config = build_config(CONFIGS[name])
    store = LocalStore(root)
    run = make_run(store, StoreSpec(location=str(root)), name, config)
    drive(run)
    return config


def digests(root: Path, config_hash: str) -> dict[str, str]:
    """sha256 of every file under root (normalised, see the module docstring), by relative path."""
    out: dict[str, str] = {}
    files = (p for p in root.rglob("*") if p.is_file() and ".pec-locks" not in p.parts)
    for path in sorted(files):
        data = path.read_bytes()
        data = data.replace(str(root).encode(), STORE_PLACEHOLDER.encode())
        if path.name == "pec_state.json":
            data = data.replace(config_hash.encode(), HASH_PLACEHOLDER.encode())
        out[path.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return out


def all_digests(base: Path) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for name in CONFIGS:
        root = base / name
        root.mkdir(parents=True)
        config = write_golden_run(root, name)
        result[name] = digests(root, config.content_hash())
    return result


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        found = all_digests(Path(tmp).resolve())
    GOLDEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN_FILE.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    print(f"wrote {sum(len(v) for v in found.values())} digests", file=sys.stderr)
