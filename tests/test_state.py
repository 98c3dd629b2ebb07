"""pec_state.json models: the sheet's example round-trips, every invariant is enforced."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest

from pec.errors import ConflictError, InputError, StateError
from pec.runs import layout
from pec.runs.run_names import validate_run_name
from pec.runs.state import (
    SCHEMA_VERSION,
    PECState,
    check_successor,
    dump_state,
    parse_state,
)
from pec.runs.state_io import load_state, save_state
from pec.runs.store import LocalStore


def sheet_state() -> dict[str, Any]:
    """The reference sheet's example, filled in, plus pec's extra fields."""
    return {
        "schema_version": 1,
        "run_name": "my_run",
        "iteration": 3,
        "usd_rel_path": "morphologies/ballu/robot.usd",
        "design_space": {"GCR": [0.75, 0.89], "spcf": [0.001, 0.010]},
        "experts": [
            {
                "id": 0,
                "mu": [0.79, 0.0035],
                "sigma": [[0.0001, 0.0], [0.0, 4e-07]],
                "designs": [[0.78, 0.003], [0.8, 0.004], [0.79, 0.0035]],
                "trained": True,
                "checkpoint": "/abs/path/to/expert_0/iter_2/model_best.pt",
                "last_checkpoint": "/abs/path/to/expert_0/iter_2/model_last.pt",
                "last_trained_pec_iter": 2,
                "failures": [],
            },
            {
                "id": 1,
                "mu": [0.85, 0.0075],
                "sigma": [[0.0002, 0.0], [0.0, 9e-07]],
                "designs": [[0.86, 0.007], [0.84, 0.008]],
                "trained": True,
                "checkpoint": "s3://bucket/runs/my_run/checkpoints/expert_1/iter_2/model_best.pt",
                "last_checkpoint": None,
                "last_trained_pec_iter": 2,
                "failures": [
                    {
                        "iteration": 1,
                        "message": "trainer crashed before EXP_DIR",
                        "fallback_checkpoint": "s3://bucket/runs/my_run/x/model_best.pt",
                    }
                ],
            },
        ],
        "history": [
            {
                "iteration": 1,
                "experts_snapshot": [
                    {
                        "id": 0,
                        "mu": [0.79, 0.0035],
                        "sigma": [[1e-4, 0.0], [0.0, 4e-7]],
                        "checkpoint": "/abs/a.pt",
                        "n_designs": 2,
                        "dl": 2,
                    },
                    {
                        "id": 1,
                        "mu": [0.85, 0.0075],
                        "sigma": [[2e-4, 0.0], [0.0, 9e-7]],
                        "checkpoint": None,
                        "n_designs": 1,
                        "dl": None,
                    },
                ],
                "coverage_before": 0.4,
            },
            {
                "iteration": 2,
                "experts_snapshot": [
                    {
                        "id": 0,
                        "mu": [0.79, 0.0035],
                        "sigma": [[1e-4, 0.0], [0.0, 4e-7]],
                        "checkpoint": "/abs/a.pt",
                        "n_designs": 3,
                        "dl": 2,
                    },
                    {
                        "id": 1,
                        "mu": [0.85, 0.0075],
                        "sigma": [[2e-4, 0.0], [0.0, 9e-7]],
                        "checkpoint": "/abs/b.pt",
                        "n_designs": 2,
                        "dl": 2,
                    },
                ],
                "coverage_before": None,
            },
        ],
        "init_strategy": "stochastic_fps",
        "init_seed": 0,
        "init_sigma_scale": 0.1,
        "init_target_coverage": None,
        "init_realized_coverage": 0.31,
        "config_hash": "abc123",
        "coverage": [{"iteration": 1, "coverage": 0.4}, {"iteration": 2, "coverage": 0.5}],
        "coverage_seed": 1234,
    }


def encode(d: dict[str, Any]) -> bytes:
    return json.dumps(d).encode()


def test_sheet_example_round_trips() -> None:
    raw = sheet_state()
    state = parse_state(encode(raw), "mem")
    assert state.schema_version == SCHEMA_VERSION
    assert state.K == 2
    dumped = dump_state(state)
    assert json.loads(dumped) == raw
    again = parse_state(dumped, "mem")
    assert again == state
    assert dump_state(again) == dumped  # stable bytes
    assert dumped.endswith(b"\n") and b'\n  "run_name": "my_run"' in dumped


def test_arrays() -> None:
    state = parse_state(encode(sheet_state()), "mem")
    np.testing.assert_array_equal(state.expert_mus(), [[0.79, 0.0035], [0.85, 0.0075]])
    np.testing.assert_array_equal(state.expert_variances(), [[1e-4, 4e-7], [2e-4, 9e-7]])
    d0 = state.designs_array(0)
    assert d0.shape == (3, 2) and d0[1, 0] == 0.8 and d0[1, 1] == 0.004
    raw = sheet_state()
    raw["experts"][1]["designs"] = []
    raw["history"][0]["experts_snapshot"][1]["n_designs"] = 0
    raw["history"][1]["experts_snapshot"][1]["n_designs"] = 0
    assert parse_state(encode(raw), "mem").designs_array(1).shape == (0, 2)
    with pytest.raises(StateError, match="expert id 5"):
        state.designs_array(5)


def test_minimal_state_defaults() -> None:
    raw = sheet_state()
    for key in ("schema_version", "usd_rel_path", "history", "coverage"):
        raw.pop(key)
    raw["iteration"] = 0
    for e in raw["experts"]:
        for key in (
            "trained",
            "checkpoint",
            "last_checkpoint",
            "last_trained_pec_iter",
            "failures",
        ):
            e.pop(key)
    state = parse_state(encode(raw), "mem")
    assert state.history == [] and state.coverage == [] and state.usd_rel_path is None
    assert state.experts[0].trained is False and state.experts[0].checkpoint is None


def _mutate(path: str, value: Any) -> dict[str, Any]:
    raw = sheet_state()
    target: Any = raw
    parts = path.split(".")
    for p in parts[:-1]:
        target = target[int(p)] if p.isdigit() else target[p]
    last = parts[-1]
    if value is _DELETE:
        del target[last]
    elif last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return raw


_DELETE = object()

BROKEN = [
    ("experts.0.sigma", [[1e-4, 1e-6], [1e-6, 4e-7]], "off-diagonal"),
    ("experts.0.sigma", [[0.0, 0.0], [0.0, 4e-7]], "positive variances"),
    ("experts.0.sigma", [[1e-4, 0.0, 0.0], [0.0, 4e-7]], "2x2"),
    ("experts.0.mu", [0.79], "one \\[GCR, spcf\\] pair"),
    ("experts.0.checkpoint", "logs/model_best.pt", "not absolute"),
    ("experts.0.last_checkpoint", "s3://bucket-only", "not absolute"),
    ("experts.1.failures.0.fallback_checkpoint", "x.pt", "not absolute"),
    ("experts.0.designs", [{"GCR": 0.8, "spcf": 0.004}], "is a dict"),
    ("experts.0.designs", [[0.8, 0.004, 1.0]], "has 3 values"),
    ("experts.0.designs", [[0.95, 0.004]], "outside the design space"),
    ("experts.1.designs", [[0.80, 0.0005], [0.8, 0.004]], "outside the design space"),
    ("experts.1.id", 2, "must be 0..1 in order"),
    ("history.1.iteration", 1, "not strictly increasing"),
    ("history.1.iteration", 3, "entries must be < iteration"),
    ("history.0.experts_snapshot.0.n_designs", 4, "exceeds its current 3 designs"),
    ("history.0.experts_snapshot.1.id", 0, "snapshot ids"),
    ("iteration", -1, "iteration: Input should be greater than or equal to 0"),
    ("iteration", 1, "last_trained_pec_iter 2 is after"),
    ("run_name", "../etc", "run_name"),
    ("design_space", {"GCR": [0.89, 0.75], "spcf": [0.001, 0.01]}, "lo < hi"),
    ("design_space", {"GCR": [0.75, 0.89]}, "exactly 'GCR' and 'spcf'"),
    ("experts", [], "experts is empty"),
    ("experts.0.trained", "maybe", "experts.0.trained"),
    ("experts.0.checkpoint", None, "trained but has no checkpoint"),
    ("experts.0.mu", [float("nan"), 0.003], "finite"),
    ("coverage.1.iteration", 1, "coverage iterations"),
    ("coverage.1.coverage", 1.5, "less than or equal to 1"),
    ("schema_version", 2, "schema_version 2 is not supported"),
    ("config_hash", _DELETE, "config_hash: required field is missing"),
    ("experts.0.surprise", 1, "experts.0.surprise: unknown field"),
    ("bogus", 1, "bogus: unknown field"),
]


@pytest.mark.parametrize(("path", "value", "message"), BROKEN)
def test_broken_invariant_rejected(path: str, value: Any, message: str) -> None:
    raw = _mutate(path, value)
    data = json.dumps(raw, allow_nan=True).encode()
    with pytest.raises(StateError, match=message) as info:
        parse_state(data, "/runs/my_run/pec_state.json")
    text = str(info.value)
    assert text.startswith("/runs/my_run/pec_state.json: ")
    assert "\n" not in text


def test_invalid_json_and_wrong_top_level() -> None:
    with pytest.raises(StateError, match=r"src: not valid JSON .* line 1 column 2"):
        parse_state(b"{oops", "src")
    with pytest.raises(StateError, match="top level is list"):
        parse_state(b"[1, 2]", "src")
    with pytest.raises(StateError, match="not UTF-8"):
        parse_state(b"\xff\xfe{", "src")


def test_designs_tolerance_on_box_edge() -> None:
    raw = sheet_state()
    raw["experts"][0]["designs"].append([0.89 + 1e-13, 0.001 - 1e-15])
    parse_state(encode(raw), "mem")  # floating-point noise on the edge is accepted


def test_dump_rejects_nan_introduced_after_validation() -> None:
    state = parse_state(encode(sheet_state()), "mem")
    state.experts[0].mu[0] = float("nan")
    with pytest.raises(StateError, match="NaN or inf"):
        dump_state(state)


# ---------------------------------------------------------------- check_successor


def _state(raw: dict[str, Any] | None = None) -> PECState:
    return parse_state(encode(raw or sheet_state()), "mem")


def test_successor_accepts_appends() -> None:
    old = _state()
    new = old.model_copy(deep=True)
    new.experts[0].designs.append([0.8, 0.005])
    new.history.append(new.history[-1].model_copy(update={"iteration": 3}, deep=True))
    new.iteration = 4
    new.coverage.append(new.coverage[-1].model_copy(update={"iteration": 4}))
    new.config_hash = "changed-is-allowed"
    check_successor(old, _state(json.loads(dump_state(new))))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.experts[0].designs.pop(), r"shrinks experts\[0\].designs from 3 to 2"),
        (
            lambda s: s.experts[1].designs.__setitem__(0, [0.87, 0.007]),
            r"rewrites existing experts\[1\].designs",
        ),
        (lambda s: s.history.pop(), "shrinks history from 2 to 1"),
        (lambda s: setattr(s.history[0], "coverage_before", 0.9), "rewrites existing history"),
        (lambda s: setattr(s, "iteration", 2), "moves iteration back from 3 to 2"),
        (lambda s: s.experts.pop(), "number of experts from 2 to 1"),
        (lambda s: s.design_space.__setitem__("GCR", [0.7, 0.89]), "changes design_space"),
        (lambda s: setattr(s, "run_name", "other"), "changes run_name"),
        (lambda s: setattr(s, "init_seed", 7), "changes init_seed from 0 to 7"),
        (lambda s: s.coverage.pop(), "coverage is append-only"),
        (lambda s: s.experts[1].failures.clear(), "failures are append-only"),
    ],
)
def test_successor_rejects(change: Any, message: str) -> None:
    old = _state()
    new = old.model_copy(deep=True)
    change(new)
    with pytest.raises(StateError, match=message):
        check_successor(old, new)


# ---------------------------------------------------------------- run names, layout


@pytest.mark.parametrize("name", ["a", "my_run", "Run-1.2", "x" * 64, "0abc"])
def test_valid_run_names(name: str) -> None:
    assert validate_run_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a..b", "-x", ".hidden", "a/b", "a b", "x" * 65, "ü", "a\\b", "_a"]
)
def test_invalid_run_names(name: str) -> None:
    with pytest.raises(InputError, match="run_name"):
        validate_run_name(name)


def test_layout_keys() -> None:
    r = "demo"
    assert layout.state_key(r) == "demo/pec_state.json"
    assert layout.config_key(r) == "demo/pec_config.yaml"
    assert layout.frontier_dir(r, 2) == "demo/frontier_evals/iter_2/"
    assert layout.candidates_key(r, 2) == "demo/frontier_evals/iter_2/candidates.json"
    assert layout.scores_key(r, 0) == "demo/frontier_evals/iter_0/scores.json"
    assert layout.assignments_key(r, 1) == "demo/frontier_evals/iter_1/assignments.json"
    assert (
        layout.expert_frontier_results_key(r, 3, 1)
        == "demo/frontier_evals/iter_3/expert_1_results.json"
    )
    assert layout.samples_keys(r, 1, 4) == (
        "demo/expert_1/samples/iter_4/gcr.npy",
        "demo/expert_1/samples/iter_4/spcf.npy",
    )
    assert layout.checkpoint_dir(r, 0, 5) == "demo/checkpoints/expert_0/iter_5/"
    assert layout.best_checkpoint_key(r, 0, 5) == "demo/checkpoints/expert_0/iter_5/model_best.pt"
    assert layout.last_checkpoint_key(r, 0, 5) == "demo/checkpoints/expert_0/iter_5/model_last.pt"
    assert layout.train_log_prefix(r, 0, 5) == "demo/checkpoints/expert_0/iter_5/tb/"
    assert layout.train_result_key(r, 0, 5) == "demo/checkpoints/expert_0/iter_5/result.json"
    assert layout.plots_key(r, "x.png") == "demo/plots/x.png"
    assert layout.initial_plot_key(r) == "demo/plots/initial_state.png"
    assert layout.frontier_plot_key(r, 3) == "demo/plots/iter_3_frontier.png"
    assert layout.after_plot_key(r, 3) == "demo/plots/after_iter_3_current.png"
    assert layout.coverage_plot_key(r) == "demo/plots/coverage.png"
    assert layout.final_eval_dir(r, "test_1000_uniform") == "demo/final_eval/test_1000_uniform/"
    assert layout.final_eval_summary_key(r, "t") == "demo/final_eval/t/summary.json"
    assert layout.final_eval_expert_key(r, "t", 2) == "demo/final_eval/t/expert_2_results.json"
    assert layout.prefect_results_prefix(r) == "demo/prefect-results/"


def test_layout_rejects_bad_inputs() -> None:
    with pytest.raises(InputError, match="run_name"):
        layout.state_key("../x")
    with pytest.raises(InputError, match="iteration"):
        layout.scores_key("demo", -1)
    with pytest.raises(InputError, match="expert_id"):
        layout.samples_keys("demo", True, 0)
    with pytest.raises(InputError, match="designs_stem"):
        layout.final_eval_dir("demo", "../up")
    with pytest.raises(InputError, match="plot name"):
        layout.plots_key("demo", "a/b.png")


# ---------------------------------------------------------------- load/save through a store


def test_load_save_cycle(local_store: LocalStore) -> None:
    assert load_state(local_store, "my_run") is None
    state = _state()
    v1 = save_state(local_store, state, None, None)
    loaded = load_state(local_store, "my_run")
    assert loaded is not None and loaded[0] == state and loaded[1] == v1
    new = state.model_copy(deep=True)
    new.experts[0].designs.append([0.8, 0.005])
    v2 = save_state(local_store, new, v1, state)
    assert v2 != v1
    # A writer still holding v1 loses.
    with pytest.raises(ConflictError, match="reload and retry"):
        save_state(local_store, new, v1, state)
    # Second initialisation loses too.
    with pytest.raises(ConflictError):
        save_state(local_store, state, None, None)
    stored = load_state(local_store, "my_run")
    assert stored is not None and stored[0] == new


def test_save_rejects_invalid_or_shrinking_state_without_writing(local_store: LocalStore) -> None:
    state = _state()
    v1 = save_state(local_store, state, None, None)
    before = local_store.read_bytes("my_run/pec_state.json")
    bad = state.model_copy(deep=True)
    bad.experts[0].sigma[0][1] = 0.5  # mutation after validation
    with pytest.raises(StateError, match="off-diagonal"):
        save_state(local_store, bad, v1, state)
    grown = state.model_copy(deep=True)
    grown.experts[0].designs.append([0.8, 0.005])
    v2 = save_state(local_store, grown, v1, state)
    before = local_store.read_bytes("my_run/pec_state.json")
    shrunk = grown.model_copy(deep=True)
    shrunk.experts[0].designs.pop()
    with pytest.raises(StateError, match=r"shrinks experts\[0\].designs from 4 to 3"):
        save_state(local_store, shrunk, v2, grown)
    assert local_store.read_bytes("my_run/pec_state.json") == before


def test_load_broken_file_raises_and_leaves_it(local_store: LocalStore) -> None:
    local_store.write_bytes("my_run/pec_state.json", b'{"run_name": "my_run"')
    with pytest.raises(StateError, match=r"pec_state.json: not valid JSON"):
        load_state(local_store, "my_run")
    assert local_store.read_bytes("my_run/pec_state.json") == b'{"run_name": "my_run"'


def test_load_rejects_foreign_run_name(local_store: LocalStore) -> None:
    raw = sheet_state()
    local_store.write_bytes("other/pec_state.json", encode(raw))
    with pytest.raises(StateError, match="belongs to run 'other'"):
        load_state(local_store, "other")


def test_deep_copy_independent() -> None:
    state = _state()
    clone = copy.deepcopy(state)
    clone.experts[0].designs.append([0.8, 0.004])
    assert len(state.experts[0].designs) == 3
