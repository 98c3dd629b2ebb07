"""Smaller frictions of the new user's journey (issue 13, item 6), each with its behaviour."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pec.errors import JobError
from pec.jobs.external import finish_external_job
from pec.jobs.spec import TrainJobSpec
from pec.presentation.cli import main
from pec.runs.job_records import StoreSpec

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")

# Every command that only reads or continues a run; none may create the store folder.
NON_STARTING = [
    ["status"],
    ["visualize"],
    ["route", "--GCR", "0.8", "--spcf", "0.005"],
    ["frontier"],
    ["evaluate-frontier"],
    ["refit"],
    ["train-expert", "--expert_id", "0"],
    ["baseline", "train"],
    ["export", "--out", "{tmp}/bundle"],
]


@pytest.mark.parametrize("command", NON_STARTING, ids=lambda c: c[0] + "-" + c[-1])
def test_reading_commands_never_create_a_store(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "no-such-store"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in command]
    assert main([*argv, "--run_name", "ghost", "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert f"no run 'ghost' in store {store}" in err
    assert not store.exists()
    assert not (tmp_path / "bundle").exists()


def test_starting_commands_create_the_store(tmp_path: Path) -> None:
    store = tmp_path / "new-store"
    argv = ["--run_name", "born", "--store", str(store), "--config", TINY]
    assert main(["init", *argv]) == 0
    assert (store / "born" / "pec_state.json").is_file()


def test_an_override_error_names_the_override_not_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["init", "--run_name", "o", "--store", str(tmp_path / "s"), "--config", TINY]
    assert main([*argv, "--set", "K=0"]) == 2
    err = capsys.readouterr().err
    assert "override K=0" in err and "tiny.yaml" not in err
    assert main([*argv, "--set", "sampling_mode=sideways"]) == 2
    err = capsys.readouterr().err
    assert "override sampling_mode=sideways" in err and "tiny.yaml" not in err
    # a bad value in the file itself still names the file
    bad = tmp_path / "bad.yaml"
    bad.write_text("K: 0\n")
    assert main(["init", "--run_name", "o", "--store", str(tmp_path / "s"), "--config", str(bad)])
    assert "bad.yaml" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def _spec(tmp_path: Path) -> TrainJobSpec:
    return TrainJobSpec(
        backend="mujoco",
        store=StoreSpec(location=str(tmp_path)),
        run_name="r",
        expert_id=0,
        iteration=0,
        samples_gcr_key="r/g.npy",
        samples_spcf_key="r/s.npy",
        start_level=0,
        max_iterations=3,
        num_envs=2,
        seed=0,
        timeout_s=10,
    )


@pytest.mark.parametrize("exit_code", [1, None])
def test_a_job_error_never_ends_with_an_empty_last_output(
    tmp_path: Path, exit_code: int | None
) -> None:
    spec = _spec(tmp_path)
    stopped = None if exit_code is not None else "timeout after 10 s"
    with pytest.raises(JobError) as caught:
        finish_external_job(
            spec,
            result_path=tmp_path / "missing.json",
            exit_code=exit_code,
            stopped_reason=stopped,
            tail=["", "  "],
        )
    message = str(caught.value)
    assert "last output" not in message and "printed nothing" in message
    with pytest.raises(JobError, match=r"last output:\nerror: boom$"):
        finish_external_job(
            spec,
            result_path=tmp_path / "missing.json",
            exit_code=1,
            stopped_reason=None,
            tail=["error: boom"],
        )


def test_prefect_home_is_ignored_by_git() -> None:
    done = subprocess.run(
        ["git", "check-ignore", "-q", ".prefect/prefect.db"], cwd=REPO, check=False
    )
    assert done.returncode == 0


@pytest.mark.usefixtures("prefect_harness")
def test_a_missing_credentials_block_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    from flows.pec_flow import pec_flow

    store = tmp_path / "store"
    state = pec_flow(
        run_name="creds",
        store=str(store),
        config=TINY,
        chain=False,
        aws_credentials_block="no-such-block",
        return_state=True,
    )
    assert state.is_failed()
    message = str(state.message)
    assert "aws_credentials_block 'no-such-block'" in message
    assert "save_aws_credentials.py" in message
    assert not store.exists()
