"""The bad-input catalogue: each case exits 2 with one clear line and leaves the store unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pec.cli import main

RUN = "cat"


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run after init and frontier (K=3, F=3), copied per case."""
    root = tmp_path_factory.mktemp("seed") / "store"
    common = ["--run_name", RUN, "--store", str(root)]
    assert (
        main(
            [
                "init",
                *common,
                "--K",
                "3",
                "--set",
                "F=3",
                "--set",
                "pool_factor=3",
                "--set",
                "N_init=4",
            ]
        )
        == 0
    )
    assert main(["frontier", *common]) == 0
    return root


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]  # {store}, {file} placeholders
    expect: str  # substring of the one-line error
    file_text: str | None = None  # written to {file} before the call
    mutate_state: Callable[[dict], None] | None = None  # applied to pec_state.json before the call
    raw_state: bytes | None = None  # replaces pec_state.json before the call


def _off_diagonal(s: dict) -> None:
    s["experts"][0]["sigma"][0][1] = 0.1


def _relative_checkpoint(s: dict) -> None:
    s["experts"][1]["checkpoint"] = "logs/model_best.pt"


def _dict_designs(s: dict) -> None:
    s["experts"][0]["designs"][0] = {"GCR": 0.8, "spcf": 0.005}


def _history_out_of_order(s: dict) -> None:
    snap = {"iteration": 5, "experts_snapshot": []}
    s["history"] = [snap]


RC = ["--run_name", RUN, "--store", "{store}"]

CASES = [
    # configuration
    Case("unknown config key", ["refit", *RC, "--set", "min_var_scal=0.1"], "min_var_scale"),
    Case("K below one", ["init", "--run_name", "new", "--store", "{store}", "--K", "0"], "K"),
    Case(
        "GCR range reversed",
        ["init", "--run_name", "new", "--store", "{store}", "--GCR_range", "0.9,0.8"],
        "GCR_range",
    ),
    Case(
        "coverage target above one",
        ["init", "--run_name", "new", "--store", "{store}", "--set", "coverage_target=1.5"],
        "coverage_target",
    ),
    Case(
        "unknown sampling mode",
        ["frontier", *RC, "--set", "sampling_mode=sideways"],
        "sampling_mode",
    ),
    Case(
        "centers count differs from K",
        [
            "init",
            "--run_name",
            "new",
            "--store",
            "{store}",
            "--K",
            "2",
            "--centers",
            "[[0.8, 0.005]]",
        ],
        "centers",
    ),
    Case(
        "centre outside the box",
        [
            "init",
            "--run_name",
            "new",
            "--store",
            "{store}",
            "--K",
            "1",
            "--centers",
            "[[0.95, 0.005]]",
        ],
        "centers",
    ),
    Case(
        "border band inverted",
        ["frontier", *RC, "--set", "border_outer_ld=-0.1"],
        "border_outer_ld",
    ),
    Case(
        "dl_initial beyond the last level", ["refit", *RC, "--set", "dl_initial=80"], "dl_initial"
    ),
    Case(
        "config file not YAML",
        ["refit", *RC, "--config", "{file}"],
        "not valid YAML",
        file_text="K: [1, 2\n",
    ),
    Case(
        "config file missing", ["refit", *RC, "--config", "/nonexistent/pec.yaml"], "does not exist"
    ),
    Case(
        "config file is a list",
        ["refit", *RC, "--config", "{file}"],
        "mapping",
        file_text="- 1\n- 2\n",
    ),
    Case(
        "unknown backend setting",
        ["refit", *RC, "--set", 'backend_settings={"ppo": {"lr": 1}}'],
        "backend_settings.ppo.lr",
    ),
    Case("override without '='", ["refit", *RC, "--set", "K"], "KEY=VALUE"),
    Case("K changed mid-run", ["refit", *RC, "--set", "K=4"], "K"),
    Case(
        "design space changed mid-run",
        ["frontier", *RC, "--set", "GCR_range=[0.7, 0.89]"],
        "GCR_range",
    ),
    # state files
    Case("state not JSON", ["refit", *RC], "pec_state.json", raw_state=b"{not json"),
    Case("state sigma not diagonal", ["refit", *RC], "sigma", mutate_state=_off_diagonal),
    Case(
        "state relative checkpoint", ["refit", *RC], "checkpoint", mutate_state=_relative_checkpoint
    ),
    Case("state designs as dicts", ["refit", *RC], "designs", mutate_state=_dict_designs),
    Case(
        "state history ahead of iteration",
        ["refit", *RC],
        "history",
        mutate_state=_history_out_of_order,
    ),
    # run names
    Case(
        "run name escapes the store",
        ["init", "--run_name", "../evil", "--store", "{store}"],
        "run_name",
    ),
    Case("run name empty", ["init", "--run_name", "", "--store", "{store}"], "run_name"),
    Case(
        "run name with a space", ["status", "--run_name", "a b", "--store", "{store}"], "run_name"
    ),
    # designs files
    Case(
        "designs file not JSON",
        ["route", *RC, "--designs_file", "{file}"],
        "not valid JSON",
        file_text="[{",
    ),
    Case(
        "designs file missing spcf",
        ["route", *RC, "--designs_file", "{file}"],
        "spcf",
        file_text='[{"id": 0, "GCR": 0.8}]',
    ),
    Case(
        "designs file duplicate id",
        ["route", *RC, "--designs_file", "{file}"],
        "appears twice",
        file_text='[{"id": 0, "GCR": 0.8, "spcf": 0.005}, {"id": 0, "GCR": 0.81, "spcf": 0.005}]',
    ),
    Case("route without a design", ["route", *RC], "--GCR"),
    # scores
    Case(
        "scores with NaN",
        ["refit", *RC, "--scores", "{file}"],
        "finite",
        file_text="[[1, NaN, 2], [0, 0, 0], [1, 1, 1]]",
    ),
    Case(
        "scores with too few experts",
        ["refit", *RC, "--scores", "{file}"],
        "K=3",
        file_text="[[1, 2, 3], [0, 0, 0]]",
    ),
    Case(
        "scores with a short row",
        ["refit", *RC, "--scores", "{file}"],
        "expected 3",
        file_text="[[1, 2], [0, 0, 0], [1, 1, 1]]",
    ),
    Case(
        "scores all null",
        ["refit", *RC, "--scores", "{file}"],
        "null",
        file_text="[null, null, null]",
    ),
    Case(
        "train an expert that does not exist",
        ["train-expert", *RC, "--expert_id", "7"],
        "expert_id",
    ),
]


def test_catalogue_has_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clear_error_and_writes_nothing(
    case: Case, seeded_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    root = tmp_path / "store"
    shutil.copytree(seeded_store, root)
    state_path = root / RUN / "pec_state.json"
    if case.raw_state is not None:
        state_path.write_bytes(case.raw_state)
    if case.mutate_state is not None:
        data = json.loads(state_path.read_text())
        case.mutate_state(data)
        state_path.write_text(json.dumps(data))
    file = tmp_path / "input.txt"
    if case.file_text is not None:
        file.write_text(case.file_text)
    before = snapshot(root)
    argv = [a.replace("{store}", str(root)).replace("{file}", str(file)) for a in case.argv]
    capsys.readouterr()

    code = main(argv)

    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("pec: error:")
    assert case.expect in err, err
    assert snapshot(root) == before
