"""The job contract as data: validation at the edge, JSON round trips, backend lookup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.job_doubles import RecordingBackend, eval_spec_dict, train_spec_dict

from pec.backends.registry import TEST_BACKEND_MODULE_ENV, get_backend
from pec.errors import ConfigError
from pec.jobs import (
    EvalJobResult,
    EvalJobSpec,
    StoreSpec,
    TrainJobResult,
    TrainJobSpec,
    parse_job_result,
    parse_job_spec,
)
from pec.runs.store import LocalStore, S3Store


def test_train_spec_round_trips_through_json(tmp_path: Path) -> None:
    spec = parse_job_spec(train_spec_dict(tmp_path, settings={"lr": 1e-3}))
    assert isinstance(spec, TrainJobSpec)
    again = parse_job_spec(spec.model_dump_json())
    assert again == spec
    assert parse_job_spec(spec.model_dump_json().encode()) == spec
    assert json.loads(spec.model_dump_json())["settings"] == {"lr": 1e-3}


def test_eval_spec_is_selected_by_kind_and_keeps_designs_as_pairs(tmp_path: Path) -> None:
    spec = parse_job_spec(eval_spec_dict(tmp_path, "/x/model_best.pt"))
    assert isinstance(spec, EvalJobSpec)
    assert spec.designs == [(0.8, 0.002), (0.85, 0.005), (0.88, 0.009)]
    dumped = json.loads(spec.model_dump_json())
    assert dumped["designs"] == [[0.8, 0.002], [0.85, 0.005], [0.88, 0.009]]


def test_unknown_key_is_rejected_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="num_env"):
        parse_job_spec(train_spec_dict(tmp_path, num_env=4))


def test_credentials_cannot_travel_in_the_store_spec(tmp_path: Path) -> None:
    data = train_spec_dict(tmp_path)
    data["store"]["secret_access_key"] = "hunter2"
    with pytest.raises(ConfigError, match=r"store.secret_access_key"):
        parse_job_spec(data)


def test_wrong_kind_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kind"):
        parse_job_spec(train_spec_dict(tmp_path, kind="frontier"))


def test_missing_field_is_rejected(tmp_path: Path) -> None:
    data = train_spec_dict(tmp_path)
    del data["samples_gcr_key"]
    with pytest.raises(ConfigError, match="samples_gcr_key"):
        parse_job_spec(data)


def test_invalid_json_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_job_spec("{not json")


@pytest.mark.parametrize(
    "designs",
    [
        [],  # nothing to evaluate
        [[0.8]],  # not a (GCR, spcf) pair
        [[0.8, 0.002, 1.0]],
        [[0.8, float("nan")]],
        [[float("inf"), 0.002]],
        [["a", 0.002]],
    ],
)
def test_bad_designs_are_rejected(tmp_path: Path, designs: list[list[object]]) -> None:
    with pytest.raises(ConfigError, match="designs"):
        parse_job_spec(eval_spec_dict(tmp_path, "/x/model_best.pt", designs=designs))


@pytest.mark.parametrize(
    ("field", "value"),
    [("start_level", 75), ("start_level", -1), ("num_envs", 0), ("timeout_s", 0.0)],
)
def test_out_of_range_numbers_are_rejected(tmp_path: Path, field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        parse_job_spec(train_spec_dict(tmp_path, **{field: value}))


def test_results_dump_to_plain_json_and_parse_back(tmp_path: Path) -> None:
    train = parse_job_spec(train_spec_dict(tmp_path))
    result = TrainJobResult(
        checkpoint_uri="/s/best.pt",
        last_checkpoint_uri=None,
        metrics={"mean_level": 4.5},
        log_uri="/s/tb/",
        warning=None,
    )
    dumped = result.model_dump(mode="json")
    assert dumped == {
        "checkpoint_uri": "/s/best.pt",
        "last_checkpoint_uri": None,
        "metrics": {"mean_level": 4.5},
        "log_uri": "/s/tb/",
        "warning": None,
    }
    assert parse_job_result(train, json.dumps(dumped)) == result
    evaluation = parse_job_spec(eval_spec_dict(tmp_path, "/x.pt"))
    assert parse_job_result(evaluation, '{"levels": [0, 74], "expert_id": 1}') == EvalJobResult(
        levels=[0, 74], expert_id=1
    )


def test_eval_result_rejects_levels_outside_the_curriculum(tmp_path: Path) -> None:
    evaluation = parse_job_spec(eval_spec_dict(tmp_path, "/x.pt"))
    with pytest.raises(ConfigError, match="levels"):
        parse_job_result(evaluation, '{"levels": [75], "expert_id": 1}')


def test_store_spec_opens_a_local_store(tmp_path: Path) -> None:
    store = StoreSpec(location=str(tmp_path)).open()
    assert isinstance(store, LocalStore)
    assert store.root_uri == str(tmp_path.resolve())


def test_store_spec_opens_s3_with_its_endpoint_and_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PEC_S3_ENDPOINT_URL", "http://ignored:1")
    store = StoreSpec(
        location="s3://bucket/runs", endpoint_url="http://127.0.0.1:8333", region="eu-west-1"
    ).open()
    assert isinstance(store, S3Store)
    assert store.root_uri == "s3://bucket/runs"
    assert store.settings.endpoint_url == "http://127.0.0.1:8333"
    assert store.settings.region == "eu-west-1"
    assert store.settings.access_key_id is None  # credentials come from boto3's chain


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"backend 'gazebo' is unknown.*mujoco.*isaaclab"):
        get_backend("gazebo")


def test_test_backends_need_the_explicit_environment_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TEST_BACKEND_MODULE_ENV, raising=False)
    with pytest.raises(ConfigError, match=TEST_BACKEND_MODULE_ENV):
        get_backend("test-recording")
    monkeypatch.setenv(TEST_BACKEND_MODULE_ENV, "support.job_doubles")
    assert isinstance(get_backend("test-recording"), RecordingBackend)
