"""Security: no unpickling from the store, no credentials anywhere a run leaves traces,
no key outside the run's prefix, containers not running as root."""

from __future__ import annotations

import ast
import io
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from support.s3_server import S3TestServer

from flows.pec_flow import pec_flow
from pec.backends.mujoco.backend import load_checkpoint
from pec.errors import InputError, PECError, StateError, StoreError
from pec.iteration.run_setup import initialise_run, preflight
from pec.runs import layout
from pec.runs.config import load_config
from pec.runs.job_records import StoreSpec
from pec.runs.run import make_run
from pec.runs.run_names import validate_run_name
from pec.runs.state_io import load_state, save_state
from pec.runs.store import LocalStore, S3Store

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")


# ---------------------------------------------------------------- nothing unpickled


class _Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch /tmp/pec-pwned-marker",))


def test_a_malicious_checkpoint_is_refused_not_executed(tmp_path: Path) -> None:
    marker = Path("/tmp/pec-pwned-marker")
    marker.unlink(missing_ok=True)
    bad = tmp_path / "model_best.pt"
    torch.save({"actor_state_dict": _Boom()}, bad)
    with pytest.raises(InputError, match="cannot be read safely"):
        load_checkpoint(bad)
    assert not marker.exists()


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            dotted = ast.unparse(func)
            if dotted == name or (dotted.endswith("." + name.split(".")[-1]) and name in dotted):
                found.append(node)
    return found


def _keyword(call: ast.Call, name: str) -> str | None:
    for kw in call.keywords:
        if kw.arg == name:
            return ast.unparse(kw.value)
    return None


SOURCES = sorted((REPO / "pec").rglob("*.py")) + sorted((REPO / "flows").rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(REPO)) for p in SOURCES])
def test_source_never_unpickles(path: Path) -> None:
    tree = ast.parse(path.read_text())
    text = ast.unparse(tree)
    assert "pickle.load" not in text and "import pickle" not in text
    assert "yaml.load(" not in text and "yaml.unsafe_load" not in text
    for call in _calls(tree, "torch.load"):
        assert _keyword(call, "weights_only") == "True", ast.unparse(call)
    for call in _calls(tree, "np.load"):
        assert _keyword(call, "allow_pickle") == "False", ast.unparse(call)
    for node in ast.walk(tree):  # persisted Prefect results are JSON, never pickle
        if (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("task", "flow")
            and (_keyword(node, "persist_result") == "True" or ast.unparse(node.func) == "flow")
        ):
            assert _keyword(node, "result_serializer") == "'json'", ast.unparse(node)


# ---------------------------------------------------------------- credentials


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_credentials_never_reach_logs_artifacts_state_or_config(
    s3_server: S3TestServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    torch.set_num_threads(1)
    secrets = [s3_server.secret_key, s3_server.access_key]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PEC_S3_ENDPOINT_URL", s3_server.endpoint_url)
    bucket = s3_server.make_bucket()
    location = f"s3://{bucket}/runs"
    caplog.set_level("INFO")  # what runs log at; botocore DEBUG prints signed headers

    state = pec_flow(
        run_name="secret",
        store=location,
        config=TINY,
        overrides={"max_pec_iterations": 1},
        chain=False,
        return_state=True,
    )
    assert state.is_completed(), state
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None

    client = s3_server.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "runs/secret/pec_state.json" in keys and "runs/secret/pec_config.yaml" in keys
    assert any("/prefect-results/" in k for k in keys)
    traces: dict[str, bytes] = {
        f"object {k}": client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys
    }
    with get_client(sync_client=True) as api:
        logs = api.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        artifacts = api.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        flow_run = api.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )[0]
        blocks = api.read_block_documents(include_secrets=True)
    assert logs and artifacts
    traces["prefect logs"] = "\n".join(log.message for log in logs).encode()
    traces["artifacts"] = "\n".join(str(a.data) + str(a.description) for a in artifacts).encode()
    traces["flow run parameters"] = repr(flow_run.parameters).encode()
    traces["result blocks"] = repr(
        [b.data for b in blocks if (b.name or "").startswith("pec-")]
    ).encode()
    out, err = capfd.readouterr()
    traces["process output"] = (out + err + caplog.text).encode()
    for where, data in traces.items():
        for secret in secrets:
            assert secret.encode() not in data, f"{where} contains a credential"


def test_store_errors_and_reprs_never_show_the_secret(s3_server: S3TestServer) -> None:
    settings = s3_server.settings(secret_access_key="wrong-" + s3_server.secret_key)
    store = S3Store(s3_server.bucket, "x", settings)
    with pytest.raises(StoreError) as caught:
        store.write_bytes("a.json", b"{}")
    for text in (str(caught.value), repr(store), repr(settings)):
        assert s3_server.secret_key not in text


# ---------------------------------------------------------------- the run's prefix


@pytest.mark.parametrize(
    "name", ["../other", "a/b", "/abs", "..", "a..b", ".hidden", "x\\y", "", "a" * 65, "ok\n"]
)
def test_run_names_that_could_escape_are_refused(name: str) -> None:
    with pytest.raises(InputError, match="run_name"):
        validate_run_name(name)


@pytest.mark.parametrize("key", ["../x", "run/../../x", "/etc/passwd", "run//x", "run/./x"])
def test_keys_cannot_leave_the_store(key: str, tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(StoreError):
        store.write_bytes(key, b"x")
    assert list(tmp_path.rglob("*")) == []


def test_uris_outside_the_store_are_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    for uri in ("/etc/passwd", str(tmp_path / "store" / ".." / "elsewhere" / "x.pt")):
        with pytest.raises(StoreError):
            store.key_for_uri(uri)


def test_a_state_pointing_at_another_runs_checkpoint_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    other = layout.best_checkpoint_key("other", 0, 0)
    store.write_bytes(other, b"PK")
    config = load_config(TINY)
    run = make_run(store, StoreSpec(location=str(root)), "mine", config)
    state, version, _ = initialise_run(run)
    experts = [e.model_copy(update={"checkpoint": store.uri(other)}) for e in state.experts]
    moved = state.model_copy(update={"experts": experts, "iteration": 1})
    save_state(store, moved, expected_version=version, previous=None)
    loaded = load_state(store, "mine")
    assert loaded is not None
    with pytest.raises(StateError, match="outside the run's prefix"):
        preflight(run, loaded[0])


# ---------------------------------------------------------------- containers


@pytest.mark.parametrize("dockerfile", sorted((REPO / "docker").glob("Dockerfile*")))
def test_containers_run_as_a_non_root_user(dockerfile: Path) -> None:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(fileobj=io.BytesIO(dockerfile.read_bytes()))
    users = [i["value"] for i in parser.structure if i["instruction"] == "USER"]
    assert users, f"{dockerfile.name} has no USER: it would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_a_relative_uri_is_a_pec_error(tmp_path: Path) -> None:
    with pytest.raises(PECError):
        LocalStore(tmp_path).key_for_uri("relative/path.pt")
