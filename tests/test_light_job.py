"""A job on a local store needs neither boto3 nor Prefect (an offline GPU host may lack both).

`python -m pec.jobs` runs a training job and then an evaluation job of its checkpoint in a
child process where importing boto3, botocore, s3transfer or Prefect raises ImportError (a
`sitecustomize` meta-path blocker); both jobs must succeed. The blocker itself is checked:
in the same environment `import boto3` and `import prefect` fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.job_doubles import write_samples

from pec.jobs.spec import EvalJobSpec, TrainJobSpec
from pec.runs import layout
from pec.runs.store import LocalStore

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("boto3", "botocore", "s3transfer", "aiobotocore", "prefect", "prefect_aws")
SETTINGS: dict[str, object] = {
    "task": {"episode_steps": 20, "physics_block_envs": 2},
    "ppo": {
        "num_steps_per_env": 8,
        "num_mini_batches": 1,
        "num_learning_epochs": 1,
        "actor_hidden_dims": [16, 16],
        "critic_hidden_dims": [16, 16],
    },
}
BLOCKER = f'''
import sys

class _Unimportable:
    """Makes the job's optional heavy dependencies unimportable, as on a bare host."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is not installed on this host (test blocker)")
        return None

sys.meta_path.insert(0, _Unimportable())
'''


def _env(site: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    env.pop("PEC_FAULT_POINT", None)
    return env


def _run_job(spec_json: str, work: Path, name: str, env: dict[str, str]) -> dict[str, object]:
    spec_path, result_path = work / f"{name}.json", work / f"{name}_result.json"
    spec_path.write_text(spec_json)
    done = subprocess.run(
        [sys.executable, "-m", "pec.jobs", str(spec_path), "--result", str(result_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=work,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "test blocker" not in done.stdout + done.stderr
    result: dict[str, object] = json.loads(result_path.read_text())
    return result


def test_a_job_on_a_local_store_runs_without_boto3_and_prefect(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = _env(site)
    for module in ("boto3", "prefect"):  # the blocker works in this environment
        probe = subprocess.run(
            [sys.executable, "-c", f"import {module}"], env=env, capture_output=True, text=True
        )
        assert probe.returncode != 0 and "test blocker" in probe.stderr, probe.stderr

    store = LocalStore(tmp_path / "store")
    keys = layout.samples_keys("light", 0, 0)
    write_samples(store, keys, num_envs=4, seed=5)
    train = TrainJobSpec(
        backend="mujoco",
        store={"location": str(store.root)},  # type: ignore[arg-type]
        run_name="light",
        expert_id=0,
        iteration=0,
        samples_gcr_key=keys[0],
        samples_spcf_key=keys[1],
        start_level=0,
        max_iterations=2,
        num_envs=4,
        seed=13,
        settings=SETTINGS,
        timeout_s=300.0,
        threads=2,
    )
    trained = _run_job(train.model_dump_json(), tmp_path, "train", env)
    checkpoint = str(trained["checkpoint_uri"])
    assert store.exists(layout.best_checkpoint_key("light", 0, 0))

    evaluate = EvalJobSpec(
        backend="mujoco",
        store={"location": str(store.root)},  # type: ignore[arg-type]
        run_name="light",
        expert_id=0,
        iteration=0,
        checkpoint_uri=checkpoint,
        designs=[(0.8, 0.005), (0.85, 0.002)],
        num_episodes=1,
        start_difficulty=0,
        seed=3,
        settings=SETTINGS,
        timeout_s=300.0,
    )
    scored = _run_job(evaluate.model_dump_json(), tmp_path, "eval", env)
    levels = scored["levels"]
    assert isinstance(levels, list) and len(levels) == 2
