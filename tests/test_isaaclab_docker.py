"""docker/Dockerfile.gpu built on pec's CPU image, and an Isaac Lab training job run in it.

The GPU image's Dockerfile is built here FROM the CPU image the Docker tests make (Python and
torch, as a CUDA PyTorch base would bring), against the real engine, and one expert's
training job (`python -m pec.jobs` through the Docker executor) trains 2 PPO iterations on
4 envs of pec's BALLU task on Isaac Lab (kit-less Newton, on the CPU: the container gets no
GPU). Warp's kernel cache is a folder of the Docker cache, seeded from this machine's own
Warp cache and mounted into the container, so the job does not compile Warp's kernels again.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from support.docker_engine import DockerEngine, cache_dir
from test_docker_executor_real import containers_of, open_to_all, write_designs

from pec.backends.mujoco.backend import load_checkpoint
from pec.jobs.docker_executor import DockerExecutor
from pec.jobs.spec import TrainJobSpec
from pec.runs import layout
from pec.runs.job_records import StoreSpec, TrainJobResult
from pec.runs.store import LocalStore

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SETTINGS: dict[str, Any] = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())[
    "backend_settings"
]
WARP_CACHE_IN_IMAGE = "/opt/pec/warp-cache"  # docker/Dockerfile.gpu's WARP_CACHE_PATH


def host_warp_cache() -> Path:
    """This machine's Warp kernel cache (warm after `scripts/test.sh` or any Isaac Lab test)."""
    return Path(os.environ.get("WARP_CACHE_PATH") or Path.home() / ".cache" / "warp")


def warp_cache() -> Path:
    """Kept with the engine's images, seeded from this machine's Warp cache: the kernels are
    the same (same Warp, same sources, same CPU), so the first container skips the compile.
    UID 1000 (the image's user) writes into it."""
    path = cache_dir() / "isaaclab-warp-cache"
    path.mkdir(exist_ok=True)
    if host_warp_cache().is_dir():
        shutil.copytree(host_warp_cache(), path, dirs_exist_ok=True)
    for entry in [path, *path.rglob("*")]:
        entry.chmod(0o777 if entry.is_dir() else 0o666)
    return path


def test_isaaclab_training_job_in_the_gpu_image_built_on_the_cpu_base(
    docker_engine: DockerEngine, pec_isaaclab_image: str, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    run = f"dock-il-{uuid.uuid4().hex[:8]}"
    gcr_key, spcf_key = write_designs(store, run, expert=0, iteration=0)
    spec = TrainJobSpec(
        backend="isaaclab",
        store=StoreSpec(location=str(root)),
        run_name=run,
        expert_id=0,
        iteration=0,
        samples_gcr_key=gcr_key,
        samples_spcf_key=spcf_key,
        start_level=0,
        max_iterations=2,
        num_envs=4,
        seed=3,
        device="auto",  # resolved in the container: it has no GPU, so cpu
        settings=SETTINGS,
        timeout_s=900.0,
    )
    open_to_all(root)
    lines: list[str] = []
    executor = DockerExecutor(
        pec_isaaclab_image,
        volumes={str(warp_cache()): WARP_CACHE_IN_IMAGE},
        poll_interval_s=0.5,
    )

    result = executor.execute(spec, log=lines.append)

    assert isinstance(result, TrainJobResult), lines[-20:]
    assert result.warning is None
    assert result.checkpoint_uri == store.uri(layout.best_checkpoint_key(run, 0, 0))
    assert result.metrics["iterations"] == 2.0
    assert result.metrics["device_cuda"] == 0.0
    assert any("progress 2/2" in line for line in lines), lines[-20:]
    assert lines[-1].startswith("PEC_JOB_RESULT ")
    last = load_checkpoint(root / layout.last_checkpoint_key(run, 0, 0))
    assert last["iter"] == 2
    assert last["infos"]["settings"]["physics"] == "newton"
    assert torch.isfinite(next(iter(last["actor_state_dict"].values()))).all()
    assert (root / layout.best_checkpoint_key(run, 0, 0)).is_file()
    assert containers_of(docker_engine, run) == []
