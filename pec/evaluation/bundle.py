"""A deployable PEC policy: every expert, the Gaussians and a tiny router in one folder.

A robot knows its own design (GCR, spcf and, in 3-D, leg length), so deployment needs no
learned gate: route to the nearest centre (each axis normalised to the design box), or by
the run's evaluations (the score-informed router), and run that expert. ``router.json`` holds both routers' data and
``router.pt`` both routers as one TorchScript module (`pec.evaluation.torch_router`). The
bundle holds each expert's actor twice, as TorchScript (``policy_<k>.pt``) and ONNX
(``policy_<k>.onnx``), both with the observation normaliser folded in and returning the
deterministic mean action, so a consumer needs neither rsl-rl nor the training code.
A run distilled by `pec distill` also ships its student (``student.pt`` / ``student.onnx``,
one policy for every design, no router; ``PolicyBundle.student``).

This module is the format and its reference loader (``load_bundle``, with the TorchScript
and ONNX runtimes); `pec.evaluation.bundle_export` writes a bundle.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from pec.errors import InputError
from pec.maths.design_space import DesignSpace, FloatArray, IntArray
from pec.maths.routing import route
from pec.maths.score_routing import ScoreEvidence, check_router, route_by_scores

BUNDLE_FORMAT = "pec-policy-bundle"

BUNDLE_VERSION = 1

MANIFEST = "manifest.json"

ROUTER_JSON = "router.json"

ROUTER_TS = "router.pt"

GAUSSIANS_JSON = "gaussians.json"

Runtime = Literal["torchscript", "onnx"]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Policy(Protocol):
    def actions(self, observations: NDArray[np.float32]) -> NDArray[np.float32]: ...


class TorchScriptPolicy:
    def __init__(self, path: Path) -> None:
        self.module: Any = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        self.module.eval()

    def actions(self, observations: NDArray[np.float32]) -> NDArray[np.float32]:
        with torch.inference_mode():
            out = self.module(torch.as_tensor(observations, dtype=torch.float32))
        result: NDArray[np.float32] = out.cpu().numpy().astype(np.float32)
        return result


class OnnxPolicy:
    """onnxruntime when installed, else onnx's pure-numpy reference evaluator (slow, exact)."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime

            self._session: Any = onnxruntime.InferenceSession(
                str(path), providers=["CPUExecutionProvider"]
            )
            self.runtime = "onnxruntime"
        except ImportError:
            from onnx.reference import ReferenceEvaluator

            self._session = ReferenceEvaluator(str(path))
            self.runtime = "onnx.reference"

    def actions(self, observations: NDArray[np.float32]) -> NDArray[np.float32]:
        with np.errstate(over="ignore"):  # the reference Elu evaluates expm1 on both branches
            outputs = self._session.run(None, {"obs": np.asarray(observations, dtype=np.float32)})
        result: NDArray[np.float32] = np.asarray(outputs[0], dtype=np.float32)
        return result


@dataclass
class PolicyBundle:
    """A loaded bundle: ``act(gcr, spcf, observations)`` is all a robot controller needs
    (``leg=`` too for a bundle of a 3-D run)."""

    root: Path
    manifest: dict[str, Any]
    space: DesignSpace
    expert_ids: list[int]
    centres: FloatArray
    policies: dict[int, Policy]
    evidence: ScoreEvidence | None = None  # columns follow expert_ids (score-informed router)
    student: Policy | None = None  # the distilled student (`pec distill`), if exported

    @property
    def obs_dim(self) -> int:
        return int(self.manifest["obs_dim"])

    @property
    def action_dim(self) -> int:
        return int(self.manifest["action_dim"])

    def route(
        self,
        gcr: ArrayLike,
        spcf: ArrayLike,
        router: str = "nearest_centre",
        leg: ArrayLike | None = None,
    ) -> IntArray:
        """Expert id per design among the bundled experts: nearest normalised centre, or
        (``router="score_informed"``) the best predicted score from the run's evaluations.
        ``leg`` (metres) is required by, and only accepted by, a bundle of a 3-D run."""
        check_router(router)
        g = np.atleast_1d(np.asarray(gcr, dtype=np.float64))
        s = np.atleast_1d(np.asarray(spcf, dtype=np.float64))
        if g.shape != s.shape or g.ndim != 1:
            raise InputError(
                f"gcr {g.shape} and spcf {s.shape} must be scalars or equal 1-D arrays"
            )
        columns = [g, s]
        if (leg is None) != (self.space.dim == 2):
            raise InputError(
                "this bundle routes on GCR, spcf and leg; pass leg= (metres)"
                if leg is None
                else "this bundle routes on GCR and spcf only; drop leg="
            )
        if leg is not None:
            m = np.atleast_1d(np.asarray(leg, dtype=np.float64))
            if m.shape != g.shape:
                raise InputError(f"leg {m.shape} must have the shape of gcr {g.shape}")
            columns.append(m)
        ids = np.asarray(self.expert_ids, dtype=np.int64)
        points = np.stack(columns, axis=1)
        if router == "score_informed" and self.evidence is not None:
            picks = route_by_scores(points, self.evidence, self.centres, self.space)
        else:
            picks = route(points, self.centres, self.space)
        chosen: IntArray = ids[picks]
        return chosen

    def act(
        self,
        gcr: ArrayLike,
        spcf: ArrayLike,
        observations: ArrayLike,
        router: str = "nearest_centre",
        leg: ArrayLike | None = None,
    ) -> NDArray[np.float32]:
        """Actions for a batch of observations; (gcr, spcf) are one design or one per row."""
        obs = np.asarray(observations, dtype=np.float32)
        single = obs.ndim == 1
        if single:
            obs = obs[None, :]
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise InputError(
                f"observations have shape {np.shape(observations)}; pass (batch, {self.obs_dim})"
            )
        experts = self.route(gcr, spcf, router, leg)
        if experts.size == 1:
            experts = np.full(obs.shape[0], experts[0], dtype=np.int64)
        elif experts.size != obs.shape[0]:
            raise InputError(
                f"{experts.size} designs for {obs.shape[0]} observation rows; pass one design "
                "or one per row"
            )
        actions = np.zeros((obs.shape[0], self.action_dim), dtype=np.float32)
        for k in np.unique(experts).tolist():
            rows = experts == k
            actions[rows] = self.policies[int(k)].actions(obs[rows])
        return actions[0] if single else actions


def load_bundle(path: str | Path, runtime: Runtime = "torchscript") -> PolicyBundle:
    """Open a bundle folder, checking its format and every policy file's checksum."""
    root = Path(path)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        raise InputError(
            f"bundle {root} has no {MANIFEST}; pass a folder written by `pec export`"
        ) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"bundle {root}: {MANIFEST} is not valid JSON (line {exc.lineno})"
        ) from None
    if manifest.get("format") != BUNDLE_FORMAT or manifest.get("version") != BUNDLE_VERSION:
        raise InputError(
            f"bundle {root}: format {manifest.get('format')!r} v{manifest.get('version')!r} is not "
            f"{BUNDLE_FORMAT} v{BUNDLE_VERSION}; re-export it with this pec"
        )
    router = json.loads((root / manifest["router"]).read_text())
    space = DesignSpace.from_bounds(router["design_space"])
    if runtime not in ("torchscript", "onnx"):
        raise InputError(f"runtime {runtime!r} is unknown; choose torchscript or onnx")

    def open_policy(entry: dict[str, Any]) -> Policy:
        name = entry["torchscript"] if runtime == "torchscript" else entry["onnx"]
        file = root / name
        if not file.is_file():
            raise InputError(f"bundle {root} lacks {name}; re-export the bundle")
        if file_sha256(file) != entry["sha256"][name]:
            raise InputError(f"bundle {root}: {name} does not match its checksum; re-export it")
        return TorchScriptPolicy(file) if runtime == "torchscript" else OnnxPolicy(file)

    policies = {int(expert["id"]): open_policy(expert) for expert in manifest["experts"]}
    student = open_policy(manifest["student"]) if "student" in manifest else None
    return PolicyBundle(
        root=root,
        manifest=manifest,
        space=space,
        expert_ids=[int(i) for i in router["expert_ids"]],
        centres=np.asarray(router["centres"], dtype=np.float64).reshape(-1, space.dim),
        policies=policies,
        student=student,
        evidence=None
        if "score_informed" not in router
        else ScoreEvidence.from_json(
            router["score_informed"]["evidence"], len(router["expert_ids"]), space.dim
        ),
    )
