"""Offline install: a wheelhouse made here installs pec into a fresh venv with no network.

`scripts/wheelhouse.sh DIR --no-torch` collects the job's wheels (from the package index);
`scripts/setup.sh --offline DIR` then installs them into a new venv inside a network
namespace with no network at all (`unshare -n`; where that is not allowed, pip's index is
still disabled by the script), and the installed pec runs MuJoCo physics on two threads.
The "host's own torch" is this test's torch, made visible alone (torch's own folders on
PYTHONPATH), as a CUDA host's torch would be; everything else comes from the wheelhouse.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BASE_PYTHON = os.path.realpath(sys.executable)  # the interpreter behind this venv


def _torch_only(where: Path) -> Path:
    """A folder that holds this interpreter's torch and nothing else (symlinks)."""
    dist = importlib.metadata.distribution("torch")
    site = Path(str(dist.locate_file("")))
    where.mkdir()
    names = [site / "torch", site / "torchgen", site / "functorch"]
    names += list(site.glob("torch-*.dist-info"))
    for path in names:
        if path.exists():
            (where / path.name).symlink_to(path)
    return where


def _no_network() -> list[str]:
    """`unshare -n` when this process may make a network namespace, else nothing."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


@pytest.mark.slow
@pytest.mark.timeout(3600)  # minutes on idle cores; 25+ minutes on a heavily loaded 2-core VM
def test_wheelhouse_installs_offline_into_a_fresh_venv(tmp_path: Path) -> None:
    house = tmp_path / "wheels"
    env = {**os.environ, "PYTHON": sys.executable}  # the online machine: this venv's pip
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "wheelhouse.sh"), str(house), "--no-torch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    wheels = {p.name.split("-")[0].lower() for p in house.glob("*.whl")}
    assert {"pec", "mujoco", "rsl_rl_lib", "numpy", "prefect", "boto3"} <= wheels
    assert "torch" not in wheels
    listed = (house / "requirements.txt").read_text().splitlines()
    assert "mujoco==3.12.0" in listed and "pec==0.1.0" in listed

    torch_dir = _torch_only(tmp_path / "host-torch")
    venv = tmp_path / "venv"
    offline = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))} | {
        "PYTHON": BASE_PYTHON,
        "VENV": str(venv),
        "PYTHONPATH": str(torch_dir),
    }
    cut_off = _no_network()
    installed = subprocess.run(
        [*cut_off, "bash", str(REPO / "scripts" / "setup.sh"), "--offline", str(house)],
        env=offline,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    smoke = (
        "import pec, torch, numpy as np\n"
        "from pec.backends.mujoco.env import BalluVecEnv\n"
        "env = BalluVecEnv(8, threads=2)\n"
        "assert len(env.sim.blocks) == 1\n"
        "obs, rew, done, _ = env.step(torch.full((8, 2), 0.5))\n"
        "assert np.isfinite(obs['policy'].numpy()).all()\n"
        "print(pec.__file__)\n"
    )
    ran = subprocess.run(
        [*cut_off, str(venv / "bin" / "python"), "-c", smoke],
        env=offline,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip().startswith(str(venv))  # the installed wheel, not this checkout
    # the installed job entry point starts (its usage on a missing argument: exit 2)
    usage = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pec.jobs"],
        env=offline,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert usage.returncode == 2 and "spec" in usage.stderr


def test_offline_setup_refuses_a_folder_that_is_no_wheelhouse(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "setup.sh"), "--offline", str(tmp_path)],
        env={**os.environ, "VENV": str(tmp_path / "venv")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    hint = "--offline: pass a wheelhouse folder made by 'bash scripts/wheelhouse.sh DIR'"
    assert done.stderr.strip().splitlines() == [f"{hint} (it holds requirements.txt)"]
    assert not (tmp_path / "venv").exists()
