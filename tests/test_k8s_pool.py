"""The Kubernetes work-pool template (deployments/k8s-gpu-pool.json), issue 21 item 4.

The template is rendered with Prefect's own renderer and the worker's env/args handling,
then validated against the Kubernetes API schema of Kubernetes 1.37 in strict mode (unknown
or misplaced fields rejected), from the pinned `kubernetes-validate` package's OpenAPI-derived
JSON schemas. Each expert pod asks for one `nvidia.com/gpu`.
"""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from prefect.utilities.templating import apply_values

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "deployments" / "k8s-gpu-pool.json"
KUBERNETES_VERSION = "1.37"


def template() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TEMPLATE.read_text())
    return data


def rendered_manifest(values: dict[str, Any]) -> dict[str, Any]:
    """The Job manifest a prefect-kubernetes worker submits for these job variables."""
    data = template()
    defaults = {
        name: spec["default"]
        for name, spec in data["variables"]["properties"].items()
        if "default" in spec
    }
    configuration = apply_values(data["job_configuration"], {**defaults, **values})
    manifest: dict[str, Any] = copy.deepcopy(configuration["job_manifest"])
    # as the worker does: env as a list of name/value pairs, the command split into args
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    container["env"] = [{"name": k, "value": v} for k, v in configuration["env"].items()]
    container["args"] = shlex.split(configuration["command"])
    return manifest


VALUES = {
    "name": "expert-train-3-demo-it0",
    "image": "registry.example.com/team/pec-isaaclab:2026",
    "env": {"PEC_STORE": "s3://pec/runs", "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true"},
    "labels": {"pec.run": "demo"},
    "command": "prefect flow-run execute",
}


def test_the_variables_are_a_json_schema_their_defaults_satisfy() -> None:
    variables = template()["variables"]
    jsonschema.Draft202012Validator.check_schema(variables)
    defaults = {k: v["default"] for k, v in variables["properties"].items() if "default" in v}
    jsonschema.validate({**defaults, **VALUES}, variables)


def test_the_rendered_job_is_valid_kubernetes_and_asks_for_one_gpu() -> None:
    manifest = rendered_manifest(VALUES)
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert container["image"] == VALUES["image"]
    assert {"name": "PEC_STORE", "value": "s3://pec/runs"} in container["env"]
    assert manifest["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"


def test_the_schema_check_rejects_a_misplaced_gpu_request() -> None:
    """The validation is not a rubber stamp: the GPU limit written on the container without
    its `resources`, or a misspelt field, are refused."""
    manifest = rendered_manifest(VALUES)
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    container["limits"] = container.pop("resources")["limits"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    manifest = rendered_manifest(VALUES)
    manifest["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
