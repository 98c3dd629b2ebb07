"""The bad-input catalogue: each case exits 2 with one clear line and leaves the store unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pec.errors import StateError
from pec.presentation.cli import main
from pec.runs import layout

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
        "unknown evaluation protocol",
        ["init", "--run_name", "new", "--store", "{store}", "--set", "score=best_level"],
        "score",
    ),
    Case(
        "level search ceiling above the top level",
        ["init", "--run_name", "new", "--store", "{store}", "--set", "search_max_level=80"],
        "search_max_level",
    ),
    Case(
        "level search ceiling zero",
        ["init", "--run_name", "new", "--store", "{store}", "--set", "search_max_level=0"],
        "search_max_level",
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
    # final_level settings that level_search (the seeded run's protocol) would ignore
    Case(
        "frontier episodes under level search",
        ["evaluate-frontier", *RC, "--num_episodes", "5"],
        "--num_episodes: the level_search protocol does not use it (it searches levels 0..74); "
        "drop --num_episodes, or pass --set score=final_level",
    ),
    Case(
        "frontier start level under level search",
        ["evaluate-frontier", *RC, "--set", "search_max_level=30", "--start_difficulty", "2"],
        "--start_difficulty: the level_search protocol does not use it (it searches levels 0..30)",
    ),
    Case(
        "frontier flag under a level search named by --set",
        ["evaluate-frontier", *RC, "--set", "score=level_search", "--num_episodes", "5"],
        "drop --num_episodes, or pass --set score=final_level to score the original's way",
    ),
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


# ---------------------------------------------------------------- input classes of issue 13
#
# Each class below has at least three cases. Every case runs the `pec` command's entry
# point on a copy of the seeded run, then checks: exit 2, one stderr line, no traceback, and
# every byte under the test's folder (the store, and the folder outside it that symlinks
# point to) unchanged. `test_the_pec_command_*` runs one case per class as a real process.

OUTSIDE = "outside"  # a folder next to the store that symlinks lead to


@dataclass(frozen=True)
class Bad:
    cls: str
    name: str
    argv: list[str]  # {store}, {file}, {outside} placeholders
    expect: str
    file_bytes: bytes | None = None
    breaks: Callable[[Path], None] | None = None  # applied to the store root
    env: dict[str, str] | None = None
    mutate_state: Callable[[dict], None] | None = None
    forbidden: str | None = None  # a value that must not appear in the message


def _write(key: str, data: bytes) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)

    return apply


def _set(path: list[str | int], value: object) -> Callable[[dict], None]:
    def apply(state: dict) -> None:
        target = state
        for part in path[:-1]:
            target = target[part]  # type: ignore[index]
        target[path[-1]] = value  # type: ignore[index]

    return apply


def _link_run_outside(root: Path) -> None:
    outside = root.parent / OUTSIDE / RUN
    shutil.move(str(root / RUN), outside)
    (root / RUN).symlink_to(outside, target_is_directory=True)


def _link_state_outside(root: Path) -> None:
    target = root.parent / OUTSIDE / "someone_elses.json"
    shutil.move(str(root / RUN / "pec_state.json"), target)
    (root / RUN / "pec_state.json").symlink_to(target)


def _link_frontier_outside(root: Path) -> None:
    folder = root / RUN / "frontier_evals"
    outside = root.parent / OUTSIDE / "frontier_evals"
    shutil.move(str(folder), outside)
    folder.symlink_to(outside, target_is_directory=True)


def _link_new_run_outside(root: Path) -> None:
    (root / "fresh").symlink_to(root.parent / OUTSIDE, target_is_directory=True)


CANDIDATES = layout.candidates_key(RUN, 0)
SCORES = layout.scores_key(RUN, 0)
ASSIGNMENTS = layout.assignments_key(RUN, 0)
RESULT = layout.train_result_key(RUN, 0, 0)
RECORDED_CONFIG = layout.config_key(RUN)
SCORES_ARG = ["refit", *RC, "--scores", "{file}"]
NEW = ["init", "--run_name", "new", "--store", "{store}"]
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
DEEP_YAML = "[" * 5_000 + "]" * 5_000
SECRET = "s3cr3t-Key"

BAD = [
    # files that are not UTF-8
    Bad("utf8", "config file", ["refit", *RC, "--config", "{file}"], "not UTF-8", b"K: 3 # \xff\n"),
    Bad("utf8", "scores file", SCORES_ARG, "not UTF-8", b"[[1, 2, 3], \xfe]"),
    Bad(
        "utf8",
        "designs file",
        ["route", *RC, "--designs_file", "{file}"],
        "not UTF-8",
        b'[{"id": 0, "GCR": 0.8, "spcf": 0.005, "note": "\xe9"}]',
    ),
    Bad(
        "utf8",
        "recorded config",
        ["refit", *RC],
        "not UTF-8",
        breaks=_write(RECORDED_CONFIG, b"K: \xff"),
    ),
    Bad(
        "utf8",
        "recorded candidates",
        ["refit", *RC],
        "not UTF-8",
        breaks=_write(CANDIDATES, b"\x80{"),
    ),
    Bad(
        "utf8",
        "recorded scores",
        ["refit", *RC],
        "not UTF-8",
        breaks=_write(SCORES, b'{"scores": [[1, 2, 3], null, "\xff"]}'),
    ),
    Bad(
        "utf8",
        "recorded state",
        ["status", *RC],
        "not UTF-8",
        breaks=_write(f"{RUN}/pec_state.json", b"\xc3("),
    ),
    # deep nesting
    Bad(
        "nesting",
        "config file",
        ["refit", *RC, "--config", "{file}"],
        "nests",
        f"K: {DEEP_YAML}".encode(),
    ),
    Bad("nesting", "override value", ["refit", *RC, "--set", f"min_designs={DEEP_YAML}"], "nests"),
    Bad("nesting", "scores file", SCORES_ARG, "nests", DEEP_JSON),
    Bad("nesting", "designs file", ["route", *RC, "--designs_file", "{file}"], "nests", DEEP_JSON),
    Bad(
        "nesting",
        "recorded state",
        ["status", *RC],
        "nests",
        breaks=_write(f"{RUN}/pec_state.json", DEEP_JSON),
    ),
    Bad("nesting", "recorded scores", ["refit", *RC], "nests", breaks=_write(SCORES, DEEP_JSON)),
    # sizes without an upper bound
    Bad("size", "N_init", [*NEW, "--set", "N_init=1000000000"], "N_init"),
    Bad("size", "init_pool_size", [*NEW, "--set", "init_pool_size=100000000000"], "init_pool_size"),
    Bad(
        "size",
        "F x pool_factor",
        ["frontier", *RC, "--set", "F=1000", "--set", "pool_factor=100000"],
        "GiB",
    ),
    Bad(
        "size",
        "num_envs",
        ["train-expert", *RC, "--expert_id", "0", "--num_envs", "100000000"],
        "num_envs",
    ),
    Bad("size", "MuJoCo envs", [*NEW, "--set", "num_envs=20000"], "MuJoCo"),
    Bad(
        "size",
        "uniform designs",
        [
            "designs",
            "uniform",
            "--n",
            "10000000000",
            "--out",
            "{file}.json",
            "--GCR_range",
            "0.75,0.89",
        ],
        "--n",
    ),
    Bad(
        "size", "num_episodes", ["frontier", *RC, "--set", "num_episodes=100000000"], "num_episodes"
    ),
    # stored JSON of the run, corrupt or of the wrong type
    Bad(
        "record",
        "candidates cut off",
        ["refit", *RC],
        "not valid JSON",
        breaks=_write(CANDIDATES, b'{"candidates": ['),
    ),
    Bad(
        "record",
        "candidates a list",
        ["refit", *RC],
        "top level is list",
        breaks=_write(CANDIDATES, b"[1, 2, 3]"),
    ),
    Bad(
        "record",
        "candidate GCR a string",
        ["refit", *RC],
        "candidates[0].GCR",
        breaks=_write(CANDIDATES, b'{"candidates": [{"GCR": "0.8", "spcf": 0.005}]}'),
    ),
    Bad(
        "record",
        "scores not rows",
        ["refit", *RC],
        "scores is int",
        breaks=_write(SCORES, b'{"scores": 5}'),
    ),
    Bad(
        "record",
        "scores cut off",
        ["refit", *RC],
        "not valid JSON",
        breaks=_write(SCORES, b'{"scores": [[1,'),
    ),
    Bad(
        "record",
        "assignments wrong type",
        ["status", *RC],
        "won_counts",
        breaks=_write(ASSIGNMENTS, b'{"won_counts": "many"}'),
    ),
    Bad(
        "record",
        "result wrong type",
        ["status", *RC],
        "metrics must be an object",
        breaks=_write(RESULT, b'{"checkpoint_uri": "x", "metrics": "lots"}'),
    ),
    Bad(
        "record",
        "result a string",
        ["status", *RC],
        "expected a JSON object",
        breaks=_write(RESULT, b'"done"'),
    ),
    # scores: nesting, range, integers, booleans
    Bad(
        "scores",
        "rows nested one level too deep",
        SCORES_ARG,
        "not a number",
        b"[[[1], [2], [3]], [0, 0, 0], [1, 1, 1]]",
    ),
    Bad(
        "scores",
        "a row that is a number",
        SCORES_ARG,
        "expected a list of 3",
        b"[5, [0, 0, 0], [1, 1, 1]]",
    ),
    Bad(
        "scores",
        "level above 74",
        SCORES_ARG,
        "outside the levels 0..74",
        b"[[1, 99, 2], [0, 0, 0], [1, 1, 1]]",
    ),
    Bad(
        "scores",
        "negative level",
        SCORES_ARG,
        "outside the levels 0..74",
        b"[[1, -1, 2], [0, 0, 0], [1, 1, 1]]",
    ),
    Bad(
        "scores",
        "fractional level",
        SCORES_ARG,
        "not an integer",
        b"[[1, 2.5, 2], [0, 0, 0], [1, 1, 1]]",
    ),
    Bad(
        "scores",
        "boolean level",
        SCORES_ARG,
        "not a number",
        b"[[true, 1, 2], [0, 0, 0], [1, 1, 1]]",
    ),
    Bad(
        "scores",
        "infinite level",
        SCORES_ARG,
        "not a finite number",
        b"[[1e999, 1, 2], [0, 0, 0], [1, 1, 1]]",
    ),
    # booleans as integers, infinite floats in configs
    Bad("config", "K: true", [*NEW, "--set", "K=true"], "true/false"),
    Bad("config", "F: false", ["frontier", *RC, "--set", "F=false"], "true/false"),
    Bad(
        "config",
        "PPO rollout: true",
        ["refit", *RC, "--set", 'backend_settings={"ppo": {"num_steps_per_env": true}}'],
        "true/false",
    ),
    Bad(
        "config",
        "infinite timeout",
        ["refit", *RC, "--config", "{file}"],
        "finite",
        b"train_timeout_h: .inf\n",
    ),
    Bad(
        "config",
        "infinite min_var_scale",
        ["refit", *RC, "--set", "min_var_scale=.inf"],
        "min_var_scale",
    ),
    Bad("config", "infinite jitter", [*NEW, "--set", "init_jitter_scale=.inf"], "finite"),
    # the state: means outside the box, schema_version not an integer
    Bad(
        "state",
        "mean outside the box",
        ["refit", *RC],
        "mu",
        mutate_state=_set(["experts", 1, "mu"], [0.95, 0.005]),
    ),
    Bad(
        "state",
        "mean below the box",
        ["status", *RC],
        "mu",
        mutate_state=_set(["experts", 0, "mu"], [0.8, -0.5]),
    ),
    Bad(
        "state",
        "schema_version a string",
        ["status", *RC],
        "schema_version",
        mutate_state=_set(["schema_version"], "1"),
    ),
    Bad(
        "state",
        "schema_version a float",
        ["status", *RC],
        "schema_version",
        mutate_state=_set(["schema_version"], 1.0),
    ),
    Bad(
        "state",
        "schema_version true",
        ["status", *RC],
        "schema_version",
        mutate_state=_set(["schema_version"], True),
    ),
    Bad(
        "state",
        "variance that overflows",
        ["frontier", *RC],
        "sigma",
        mutate_state=_set(["experts", 0, "sigma"], [[1e-320, 0.0], [0.0, 1e-320]]),
    ),
    # symlinks leading outside the store
    Bad(
        "symlink",
        "run folder",
        ["frontier", *RC],
        "symlink leading outside",
        breaks=_link_run_outside,
    ),
    Bad(
        "symlink",
        "state file",
        ["refit", *RC],
        "symlink leading outside",
        breaks=_link_state_outside,
    ),
    Bad(
        "symlink",
        "frontier folder",
        ["refit", *RC],
        "symlink leading outside",
        breaks=_link_frontier_outside,
    ),
    Bad(
        "symlink",
        "new run's folder",
        ["init", "--run_name", "fresh", "--store", "{store}"],
        "symlink leading outside",
        breaks=_link_new_run_outside,
    ),
    # an S3 endpoint that is not a URL (never echoed whole)
    Bad(
        "s3",
        "plain words",
        ["status", "--run_name", RUN, "--store", "s3://bucket/runs"],
        "not shown",
        env={"PEC_S3_ENDPOINT_URL": f"minio {SECRET}"},
        forbidden=SECRET,
    ),
    Bad(
        "s3",
        "credentials in the URL",
        ["status", "--run_name", RUN, "--store", "s3://bucket/runs"],
        "user:password@",
        env={"PEC_S3_ENDPOINT_URL": f"http://admin:{SECRET}@minio:9000"},
        forbidden=SECRET,
    ),
    Bad(
        "s3",
        "no scheme",
        ["status", "--run_name", RUN, "--store", "s3://bucket/runs"],
        "http://",
        env={"PEC_S3_ENDPOINT_URL": f"{SECRET}.example.com:9000"},
        forbidden=SECRET,
    ),
    Bad(
        "s3",
        "port not a number",
        ["status", "--run_name", RUN, "--store", "s3://bucket/runs"],
        "not a URL",
        env={"PEC_S3_ENDPOINT_URL": f"http://minio:{SECRET}"},
        forbidden=SECRET,
    ),
]


def test_every_class_has_three_cases() -> None:
    counts = Counter(case.cls for case in BAD)
    assert set(counts) == {
        "utf8",
        "nesting",
        "size",
        "record",
        "scores",
        "config",
        "state",
        "symlink",
        "s3",
    }
    assert min(counts.values()) >= 3, counts


def _prepare(case: Bad, seeded_store: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "store"
    shutil.copytree(seeded_store, root)
    (tmp_path / OUTSIDE).mkdir()
    if case.mutate_state is not None:
        path = root / RUN / "pec_state.json"
        data = json.loads(path.read_text())
        case.mutate_state(data)
        path.write_text(json.dumps(data))
    if case.breaks is not None:
        case.breaks(root)
    file = tmp_path / "input.txt"
    if case.file_bytes is not None:
        file.write_bytes(case.file_bytes)
    argv = [a.replace("{store}", str(root)).replace("{file}", str(file)) for a in case.argv]
    return root, argv


def _everything(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder/link under ``folder`` (links not followed)."""
    found: dict[str, bytes | None] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            found[rel] = ("-> " + os.readlink(path)).encode()
        elif path.is_file():
            found[rel] = path.read_bytes()
        else:
            found[rel] = None
    return found


def _check(case: Bad, code: int, err: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("pec: error:"), err
    assert case.expect in err, err
    assert len(err) < 600, err
    if case.forbidden is not None:
        assert case.forbidden not in err, err


@pytest.mark.parametrize("case", BAD, ids=[f"{c.cls}: {c.name}" for c in BAD])
def test_bad_input_class_is_one_line_and_writes_nothing(
    case: Bad,
    seeded_store: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _root, argv = _prepare(case, seeded_store, tmp_path)
    for name, value in (case.env or {}).items():
        monkeypatch.setenv(name, value)
    before = _everything(tmp_path)
    capsys.readouterr()

    code = main(argv)

    _check(case, code, capsys.readouterr().err.strip())
    assert _everything(tmp_path) == before


ONE_PER_CLASS = [
    next(c for c in BAD if c.cls == cls and c.name == name)
    for cls, name in [
        ("utf8", "scores file"),
        ("nesting", "config file"),
        ("size", "F x pool_factor"),
        ("record", "scores not rows"),
        ("scores", "boolean level"),
        ("config", "infinite timeout"),
        ("state", "variance that overflows"),
        ("symlink", "run folder"),
        ("s3", "credentials in the URL"),
    ]
]


@pytest.mark.slow
@pytest.mark.parametrize("case", ONE_PER_CLASS, ids=[f"{c.cls}: {c.name}" for c in ONE_PER_CLASS])
def test_the_pec_command_prints_one_line_and_no_warning(
    case: Bad, seeded_store: Path, tmp_path: Path
) -> None:
    """As a real process: numpy warnings or a traceback would show on stderr here."""
    _, argv = _prepare(case, seeded_store, tmp_path)
    before = _everything(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(case.env or {})}
    pec = Path(sys.executable).with_name("pec")
    done = subprocess.run(
        [str(pec), *argv], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    _check(case, done.returncode, done.stderr.strip())
    assert _everything(tmp_path) == before


def _warns_then(fails: bool) -> Callable[..., Any]:
    """status's state loader replaced by one that overflows numpy first (as a broken input
    once did inside coverage), then fails or carries on."""
    from pec.runs.run import load_state_or_fail

    def load(store: Any, run_name: str) -> Any:
        np.exp(np.float64(1e4))  # RuntimeWarning: overflow encountered in exp
        if fails:
            raise StateError("pec_state.json: broken on purpose")
        return load_state_or_fail(store, run_name)

    return load


def test_warnings_on_the_way_to_an_error_stay_out_of_its_line(
    seeded_store: Path,
    monkeypatch: pytest.MonkeyPatch,
    recwarn: pytest.WarningsRecorder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import pec.presentation.cli.run_commands as commands

    monkeypatch.setattr(commands, "load_state_or_fail", _warns_then(fails=True))
    capsys.readouterr()
    assert main(["status", "--run_name", RUN, "--store", str(seeded_store)]) == 2
    assert capsys.readouterr().err.strip() == "pec: error: pec_state.json: broken on purpose"
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_warnings_of_a_successful_command_are_logged(
    seeded_store: Path,
    monkeypatch: pytest.MonkeyPatch,
    recwarn: pytest.WarningsRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import pec.presentation.cli.run_commands as commands

    monkeypatch.setattr(commands, "load_state_or_fail", _warns_then(fails=False))
    assert main(["status", "--run_name", RUN, "--store", str(seeded_store)]) == 0
    assert any("overflow encountered in exp" in r.getMessage() for r in caplog.records)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
