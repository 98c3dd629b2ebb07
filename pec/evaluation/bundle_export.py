"""Writing a policy bundle (`pec export`): every expert's actor exported, verified, and routed.

Each expert's actor (and the distilled student's, if the run has one) is exported twice,
as TorchScript and ONNX, with the observation normaliser folded in and returning the
deterministic mean action; both exports are checked against the checkpoint's actor before
the manifest is written, and the folder appears at once (staged, then renamed). The format
is `pec.evaluation.bundle`'s.

How close is close enough: TorchScript, ONNX Runtime and eager PyTorch evaluate the same
float32 network with different kernels (summation order, FMA, SIMD width), and so do two
CPUs running the same kernel. Each layer then rounds differently by a few units in the
last place (ulp) of the values it produces, and the differences reach the actions at the
scale of the actions. A sound export therefore agrees with the checkpoint within
``EXPORT_ULPS_PER_LAYER`` ulps per linear layer at the outputs' scale,
``tolerance = EXPORT_ULPS_PER_LAYER * layers * eps32 * max(1, max|action|)``
(:func:`export_tolerance`); a wrong export (a missing normaliser, a wrong weight or
activation) is off by a sizeable fraction of an action and is refused.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from pec.errors import InputError, NotFoundError, StateError
from pec.evaluation.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    GAUSSIANS_JSON,
    MANIFEST,
    ROUTER_JSON,
    ROUTER_TS,
    OnnxPolicy,
    TorchScriptPolicy,
    file_sha256,
)
from pec.evaluation.checkpoint_actor import actor_actions, load_actor
from pec.evaluation.distill import distill_record_key
from pec.evaluation.evidence import run_evidence
from pec.evaluation.torch_router import TorchRouter
from pec.maths.score_routing import DEFAULT_NEIGHBOURS, ScoreEvidence
from pec.runs.checkpoints import check_expert_checkpoints
from pec.runs.run import state_space
from pec.runs.state import PECState
from pec.runs.store import Store

log = logging.getLogger(__name__)

EXPORT_ULPS_PER_LAYER = 8
"""Units in the last place each linear layer may add to the export's difference."""

FLOAT32_EPS = float(np.finfo(np.float32).eps)

ONNX_OPSET = 17


def _verification_inputs(obs_dim: int, seed: int = 0) -> NDArray[np.float32]:
    """Observations spread over several normaliser scales, so a wrong mean/std shows up."""
    rng = np.random.default_rng(seed)
    scales = np.asarray([0.1, 1.0, 5.0, 20.0], dtype=np.float32)
    blocks = [rng.normal(0.0, s, size=(16, obs_dim)).astype(np.float32) for s in scales]
    return np.concatenate([np.zeros((1, obs_dim), np.float32), *blocks])


def linear_layers(actor: torch.nn.Module) -> int:
    """Number of linear layers (matrix products) between observation and action."""
    return sum(isinstance(m, torch.nn.Linear) for m in actor.modules())


def export_tolerance(reference_actions: NDArray[np.float32], layers: int) -> float:
    """Largest |exported - checkpoint| action difference that float32 arithmetic explains.

    ``EXPORT_ULPS_PER_LAYER`` ulps of float32 per linear layer, at the scale of the largest
    reference action (at least 1, so near-zero outputs are not held to denormal precision).
    """
    scale = max(1.0, float(np.max(np.abs(reference_actions))))
    return EXPORT_ULPS_PER_LAYER * max(1, layers) * FLOAT32_EPS * scale


def _export_one(actor: Any, obs_dim: int, ts_path: Path, onnx_path: Path) -> dict[str, float]:
    scripted: Any = torch.jit.script(actor.as_jit())
    scripted.save(str(ts_path))
    onnx_model: Any = actor.as_onnx(False)
    onnx_model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            onnx_model,
            (torch.zeros(1, obs_dim),),
            str(onnx_path),
            input_names=["obs"],
            output_names=["actions"],
            dynamic_axes={"obs": {0: "batch"}, "actions": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    import onnx

    onnx.checker.check_model(onnx.load(str(onnx_path)))
    obs = _verification_inputs(obs_dim)
    expected = actor_actions(actor, obs)
    ts_out = TorchScriptPolicy(ts_path).actions(obs)
    onnx_out = OnnxPolicy(onnx_path).actions(obs)
    tolerance = export_tolerance(expected, linear_layers(actor))
    diffs = {
        "torchscript_max_abs_diff": float(np.max(np.abs(ts_out - expected))),
        "onnx_max_abs_diff": float(np.max(np.abs(onnx_out - expected))),
        "max_abs_action": float(np.max(np.abs(expected))),
        "tolerance": tolerance,
    }
    for name in ("torchscript", "onnx"):
        diff = diffs[name + "_max_abs_diff"]
        if not diff <= tolerance:  # also refuses NaN
            raise StateError(
                f"exported policy {ts_path.stem} ({name}) differs from the checkpoint's actor by "
                f"{diff:.3g} (tolerance {tolerance:.3g} = {EXPORT_ULPS_PER_LAYER} float32 ulps "
                f"per layer at max |action| {diffs['max_abs_action']:.3g}); the export is wrong, "
                "do not deploy it"
            )
    return diffs


def export_bundle(
    store: Store,
    state: PECState,
    out_dir: Path,
    *,
    which: Literal["best", "last"] = "best",
    overwrite: bool = False,
) -> Path:
    """Write the bundle of every expert that has a checkpoint; returns the manifest path."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise InputError(
            f"--out {out_dir} exists and is not empty; pick a new folder or pass --overwrite"
        )
    check_expert_checkpoints(store, state, which)  # every one, before anything is written
    space = state_space(state)
    chosen: list[tuple[int, str]] = []
    for e in state.experts:
        uri = e.checkpoint if which == "best" else e.last_checkpoint
        if uri is None:
            log.warning("expert %d has no %s checkpoint; left out of the bundle", e.id, which)
            continue
        chosen.append((e.id, uri))
    if not chosen:
        raise StateError(
            f"run '{state.run_name}' has no expert with a {which} checkpoint; train it first"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Staged next to the target so the final rename is atomic (same filesystem).
    staging = Path(tempfile.mkdtemp(prefix=".pec-bundle-", dir=out_dir.parent))
    try:
        experts: list[dict[str, Any]] = []
        dims: set[tuple[int, int]] = set()
        with tempfile.TemporaryDirectory(prefix="pec-export-") as tmp:
            for k, uri in chosen:
                local = Path(tmp) / f"expert_{k}.pt"
                store.download_file(store.key_for_uri(uri), local)
                actor = load_actor(local)
                obs_dim = int(actor.obs_dim)  # type: ignore[arg-type]
                action_dim = int(actor_actions(actor, np.zeros((1, obs_dim))).shape[1])
                dims.add((obs_dim, action_dim))
                ts_path = staging / f"policy_{k}.pt"
                onnx_path = staging / f"policy_{k}.onnx"
                checks = _export_one(actor, obs_dim, ts_path, onnx_path)
                e = state.experts[k]
                experts.append(
                    {
                        "id": k,
                        "mu": list(e.mu),
                        "variance": [e.sigma[i][i] for i in range(len(e.mu))],
                        "checkpoint": uri,
                        "torchscript": ts_path.name,
                        "onnx": onnx_path.name,
                        "sha256": {
                            ts_path.name: file_sha256(ts_path),
                            onnx_path.name: file_sha256(onnx_path),
                        },
                        "verification": checks,
                    }
                )
            student = _export_student(store, state, which, staging, Path(tmp), dims)
        if len(dims) != 1:
            raise StateError(
                f"experts disagree on observation/action sizes {sorted(dims)}; "
                "all experts (and the student) of a bundle must share one robot interface"
            )
        obs_dim, action_dim = dims.pop()
        ids = np.asarray([x["id"] for x in experts], dtype=np.int64)
        centres = np.asarray([x["mu"] for x in experts], dtype=np.float64)
        evidence = run_evidence(store, state.run_name, len(state.experts), state.iteration)
        # Columns follow expert_ids: only the bundled experts can be chosen.
        bundled = ScoreEvidence(evidence.designs, evidence.scores[:, ids])
        router = {
            "rule": f"nearest centre after mapping the design box to [0, 1]^{space.dim}; ties to "
            "the lower id",
            "design_space": space.as_mapping(),
            "expert_ids": ids.tolist(),
            "centres": centres.tolist(),
            "score_informed": {
                "rule": "highest inverse-distance weighted score of the nearest evaluated "
                f"designs (k={DEFAULT_NEIGHBOURS}); ties and no evidence -> nearest centre",
                "neighbours": DEFAULT_NEIGHBOURS,
                "evidence": bundled.to_json(),
            },
        }
        (staging / ROUTER_JSON).write_text(json.dumps(router, indent=2))
        scripted_router: Any = torch.jit.script(
            TorchRouter(space.lows, space.ranges, centres, ids, bundled)
        )
        scripted_router.save(str(staging / ROUTER_TS))
        gaussians = {
            "run": state.run_name,
            "iteration": state.iteration,
            "experts": [
                {"id": e.id, "mu": list(e.mu), "sigma": e.sigma, "n_designs": len(e.designs)}
                for e in state.experts
            ],
        }
        (staging / GAUSSIANS_JSON).write_text(json.dumps(gaussians, indent=2))
        manifest = {
            "format": BUNDLE_FORMAT,
            "version": BUNDLE_VERSION,
            "run": state.run_name,
            "iteration": state.iteration,
            "checkpoint_kind": which,
            "obs_dim": obs_dim,
            "action_dim": action_dim,
            "policy_io": "obs (batch, obs_dim) float32 raw observations -> actions "
            "(batch, action_dim): normaliser inside, deterministic mean action",
            "router": ROUTER_JSON,
            "router_torchscript": ROUTER_TS,
            "router_torchscript_io": f"designs (n, {space.dim}) float64 physical "
            f"[{', '.join(space.keys)}] -> expert ids (n,) int64; router(designs) nearest centre, router(designs, True) score-informed "
            "(the evidence of router.json is inside)",
            "gaussians": GAUSSIANS_JSON,
            "experts": experts,
            **({"student": student} if student is not None else {}),
            "tolerance": {
                "rule": f"max |exported - checkpoint| <= {EXPORT_ULPS_PER_LAYER} * layers * "
                "eps32 * max(1, max|action|) on the verification observations",
                "ulps_per_layer": EXPORT_ULPS_PER_LAYER,
            },
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
        out_dir.chmod(0o755)  # mkdtemp made it private
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir / MANIFEST


def _export_student(
    store: Store,
    state: PECState,
    which: Literal["best", "last"],
    staging: Path,
    tmp: Path,
    dims: set[tuple[int, int]],
) -> dict[str, Any] | None:
    """The distilled student (`pec distill`) exported like an expert, if the run has one."""
    try:
        record = json.loads(store.read_bytes(distill_record_key(state.run_name)))
    except NotFoundError:
        return None
    stages = record.get("stages") or [{}]
    uri = record.get("checkpoint") if which == "best" else stages[-1].get("last_checkpoint_uri")
    if not isinstance(uri, str):
        log.warning("the student has no %s checkpoint; left out of the bundle", which)
        return None
    local = tmp / "student.pt"
    store.download_file(store.key_for_uri(uri), local)
    actor = load_actor(local)
    obs_dim = int(actor.obs_dim)  # type: ignore[arg-type]
    dims.add((obs_dim, int(actor_actions(actor, np.zeros((1, obs_dim))).shape[1])))
    ts_path, onnx_path = staging / "student.pt", staging / "student.onnx"
    checks = _export_one(actor, obs_dim, ts_path, onnx_path)
    return {
        "checkpoint": uri,
        "env_steps": record.get("env_steps"),
        "router": record.get("router"),
        "torchscript": ts_path.name,
        "onnx": onnx_path.name,
        "sha256": {ts_path.name: file_sha256(ts_path), onnx_path.name: file_sha256(onnx_path)},
        "verification": checks,
    }
