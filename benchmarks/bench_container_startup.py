"""Start-up overhead of an expert in a container: the same training job through the Docker
executor (pec's CPU image) and through the subprocess executor (`python -m pec.jobs`).

Both run one tiny embedded-MuJoCo training job (configs/tiny.yaml settings, 1 PPO
iteration, 4 environments) on the same local store, so what differs is container
creation, the mount, the image's interpreter start-up and removal. Target: under 5 s extra
per expert.

    .venv/bin/python benchmarks/bench_container_startup.py [--repeats 3] [--check]

The Docker engine and the image come from tests/docker_engine.py (started and built if
needed, excluded from the timing); one warm-up job of each kind is not counted.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pec.jobs.docker_executor import DockerExecutor
from pec.jobs.executors import SubprocessExecutor
from pec.jobs.spec import TrainJobSpec
from pec.runs import layout
from pec.runs.job_records import StoreSpec
from pec.runs.store import LocalStore

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import docker_engine  # noqa: E402  (test helpers: engine + image)

TARGET_S = 5.0
NUM_ENVS = 4


def job(root: Path, run: str) -> TrainJobSpec:
    store = LocalStore(root)
    rng = np.random.default_rng(0)
    keys = layout.samples_keys(run, 0, 0)
    for key, values in zip(
        keys,
        (rng.uniform(0.75, 0.89, NUM_ENVS), rng.uniform(0.001, 0.010, NUM_ENVS)),
        strict=True,
    ):
        buffer = io.BytesIO()
        np.save(buffer, values.astype(np.float32), allow_pickle=False)
        store.write_bytes(key, buffer.getvalue())
    settings: dict[str, Any] = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())[
        "backend_settings"
    ]
    for path in [root, *root.rglob("*")]:  # the image runs as UID 1000
        path.chmod(0o777 if path.is_dir() else 0o666)
    return TrainJobSpec(
        backend="mujoco",
        store=StoreSpec(location=str(root)),
        run_name=run,
        expert_id=0,
        iteration=0,
        samples_gcr_key=keys[0],
        samples_spcf_key=keys[1],
        start_level=0,
        max_iterations=1,
        num_envs=NUM_ENVS,
        seed=1,
        settings=settings,
        timeout_s=600.0,
    )


def timed(executor: SubprocessExecutor | DockerExecutor, spec: TrainJobSpec) -> float:
    started = time.perf_counter()
    executor.execute(spec)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check", action="store_true", help=f"exit 1 above {TARGET_S} s")
    args = parser.parse_args()

    prepare_started = time.perf_counter()
    engine = docker_engine.start_engine()
    try:
        image = docker_engine.ensure_cpu_image(engine)
        prepare_s = time.perf_counter() - prepare_started
        docker = DockerExecutor(
            image,
            docker_client_factory=lambda: engine.client(),
            poll_interval_s=0.1,
        )
        subprocess_executor = SubprocessExecutor()
        times: dict[str, list[float]] = {"subprocess": [], "docker": []}
        with tempfile.TemporaryDirectory(prefix="pec-bench-container-") as tmp:
            for attempt in range(args.repeats + 1):
                for kind, executor in (("subprocess", subprocess_executor), ("docker", docker)):
                    root = Path(tmp) / f"{kind}-{attempt}"
                    root.mkdir()
                    spent = timed(executor, job(root, f"bench-{kind}-{attempt}"))
                    if attempt > 0:  # attempt 0 warms caches (page cache, image layers)
                        times[kind].append(spent)
    finally:
        engine.release()

    sub_s = statistics.median(times["subprocess"])
    dock_s = statistics.median(times["docker"])
    overhead = dock_s - sub_s
    report = {
        "subprocess_s": round(sub_s, 3),
        "docker_s": round(dock_s, 3),
        "overhead_s": round(overhead, 3),
        "target_s": TARGET_S,
        "repeats": args.repeats,
        "image": image,
        "engine_and_image_ready_s": round(prepare_s, 1),
    }
    print(f"one tiny training job (median of {args.repeats}, image {image}):")
    print(f"  subprocess executor : {sub_s:7.3f} s   {[round(v, 3) for v in times['subprocess']]}")
    print(f"  docker executor     : {dock_s:7.3f} s   {[round(v, 3) for v in times['docker']]}")
    print(f"  container overhead  : {overhead:7.3f} s   (target < {TARGET_S} s)")
    print(json.dumps(report))
    return 1 if args.check and overhead >= TARGET_S else 0


if __name__ == "__main__":
    sys.exit(main())
