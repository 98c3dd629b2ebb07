"""A deployable PEC policy: every expert, the Gaussians and a tiny router in one folder.

A robot knows its own (GCR, spcf), so deployment needs no learned gate: route to the
nearest centre (both axes normalised to the design box), or by the run's evaluations (the
score-informed router), and run that expert. ``router.json`` holds both routers' data and
``router.pt`` both routers as one TorchScript module (`TorchRouter`). The bundle
holds each expert's actor twice, as TorchScript (``policy_<k>.pt``) and ONNX
(``policy_<k>.onnx``), both with the observation normaliser folded in and returning the
deterministic mean action, so a consumer needs neither rsl-rl nor the training code.
A run distilled by `pec distill` also ships its student (``student.pt`` / ``student.onnx``,
one policy for every design, no router; ``PolicyBundle.student``). ``export_bundle`` checks both formats against the training checkpoint's actor before it
writes the manifest; ``load_bundle`` is the reference loader.

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

import hashlib
import json
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

from pec.errors import InputError, NotFoundError, StateError, one_line
from pec.evaluation.distill import distill_record_key
from pec.evaluation.evidence import run_evidence
from pec.maths.design_space import DesignSpace, FloatArray, IntArray
from pec.maths.routing import route
from pec.maths.score_routing import (
    DEFAULT_NEIGHBOURS,
    DISTANCE_FLOOR,
    TIE_TOLERANCE,
    ScoreEvidence,
    check_router,
    route_by_scores,
)
from pec.runs.checkpoints import check_expert_checkpoints
from pec.runs.run import state_space
from pec.runs.state import PECState
from pec.runs.store import Store

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "pec-policy-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
ROUTER_JSON = "router.json"
ROUTER_TS = "router.pt"
GAUSSIANS_JSON = "gaussians.json"
EXPORT_ULPS_PER_LAYER = 8
"""Units in the last place each linear layer may add to the export's difference."""
FLOAT32_EPS = float(np.finfo(np.float32).eps)
ONNX_OPSET = 17

Runtime = Literal["torchscript", "onnx"]


# ---------------------------------------------------------------- the training actor


def load_actor(checkpoint: Path) -> torch.nn.Module:
    """The checkpoint's actor exactly as training/evaluation builds it (rsl-rl MLPModel).

    Architecture comes from the settings the backend saved in the checkpoint's ``infos``;
    observation and action sizes from the weights themselves.
    """
    from rsl_rl.models import MLPModel
    from tensordict import TensorDict

    from pec.backends.mujoco.backend import OBS_GROUPS, load_checkpoint, parse_settings, train_cfg

    ckpt = load_checkpoint(checkpoint)
    infos = ckpt.get("infos") or {}
    raw = dict(infos.get("settings") or {}) if isinstance(infos, dict) else {}
    settings = parse_settings(raw)
    weights: dict[str, torch.Tensor] = ckpt["actor_state_dict"]
    first = weights.get("mlp.0.weight")
    if first is None:
        raise InputError(f"checkpoint {checkpoint}: actor has no mlp.0.weight; not an MLP actor")
    obs_dim = int(first.shape[1])
    std = weights.get("distribution.std_param")
    if std is not None:
        action_dim = int(std.shape[0])
    else:
        last = max(
            (k for k in weights if k.startswith("mlp.") and k.endswith(".weight")),
            key=lambda k: int(k.split(".")[1]),
        )
        action_dim = int(weights[last].shape[0])
    cfg = train_cfg(settings.ppo)["actor"]
    cfg.pop("class_name")
    obs = TensorDict({"policy": torch.zeros(1, obs_dim)}, batch_size=[1])
    actor = MLPModel(obs, OBS_GROUPS, "actor", action_dim, **cfg)
    try:
        actor.load_state_dict(weights)
    except RuntimeError as exc:
        raise InputError(
            f"checkpoint {checkpoint} does not match its recorded actor settings ({one_line(exc)}); "
            "re-export it from the training that wrote it"
        ) from exc
    actor.eval()
    module: torch.nn.Module = actor
    return module


def actor_actions(actor: torch.nn.Module, observations: ArrayLike) -> NDArray[np.float32]:
    """Deterministic actions of a training actor (TensorDict input, as in evaluation)."""
    from tensordict import TensorDict

    obs = torch.as_tensor(np.asarray(observations, dtype=np.float32))
    with torch.inference_mode():
        out = actor(TensorDict({"policy": obs}, batch_size=[obs.shape[0]]))
    result: NDArray[np.float32] = out.detach().cpu().numpy().astype(np.float32)
    return result


# ---------------------------------------------------------------- router


class TorchRouter(torch.nn.Module):
    """Both routers of a bundle as one TorchScript module (``router.pt``).

    ``router(designs)`` (designs: (n, d) physical [GCR, spcf(, leg)]) routes to the nearest
    centre in the unit square (cube in 3-D), ties to the lower index (torch.argmin's first), as
    `pec.maths.routing.route`. ``router(designs, True)`` is the score-informed router, the
    deployable twin of `pec.maths.score_routing.route_by_scores`: the run's evidence (evaluated
    designs, already in the unit square, and each bundled expert's scores, NaN where it was not
    evaluated) is baked into the module, and the rule is repeated in torch with the same
    float64 operations in the same order (distances, a stable sort, the nearest-first weighted
    sums, the tie rule), so both pick exactly the same experts; tests/test_bundle.py checks it
    on random, edge, tied and evidence-free designs. Both return expert ids.
    """

    def __init__(
        self,
        lows: FloatArray,
        ranges: FloatArray,
        centres: FloatArray,
        ids: IntArray,
        evidence: ScoreEvidence | None = None,
        neighbours: int = DEFAULT_NEIGHBOURS,
    ):
        super().__init__()
        # Plain tensor attributes (not buffers) so mypy sees Tensors; TorchScript saves them.
        self.lows = torch.as_tensor(lows, dtype=torch.float64)
        self.ranges = torch.as_tensor(ranges, dtype=torch.float64)
        unit = (np.asarray(centres) - lows) / ranges
        self.centres = torch.as_tensor(unit, dtype=torch.float64)
        self.ids = torch.as_tensor(ids, dtype=torch.long)
        K = len(ids)
        dim = len(lows)
        if evidence is None:
            evidence = ScoreEvidence(np.zeros((0, dim)), np.zeros((0, K)))
        if evidence.scores.shape[1] != K:
            raise InputError(f"evidence has {evidence.scores.shape[1]} experts for {K} bundled")
        known = (np.asarray(evidence.designs, dtype=np.float64).reshape(-1, dim) - lows) / ranges
        self.evidence_units = torch.as_tensor(known, dtype=torch.float64)
        self.evidence_scores = torch.as_tensor(evidence.scores, dtype=torch.float64)
        self.neighbours = int(neighbours)
        self.distance_floor = float(DISTANCE_FLOOR)
        self.tie_tolerance = float(TIE_TOLERANCE)

    def forward(self, designs: torch.Tensor, score_informed: bool = False) -> torch.Tensor:
        unit = (designs.to(torch.float64) - self.lows) / self.ranges
        distances = ((unit[:, None, :] - self.centres[None, :, :]) ** 2).sum(dim=2)
        nearest = torch.argmin(distances, dim=1)
        if score_informed:
            return self.ids[self._score_informed(unit, nearest)]
        return self.ids[nearest]

    def _score_informed(self, unit: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
        """Index per design (route_by_scores on unit-square designs; fallback: nearest)."""
        n = unit.shape[0]
        K = self.evidence_scores.shape[1]
        prediction = torch.full((n, K), float("nan"), dtype=torch.float64)
        if self.evidence_units.shape[0] > 0:
            diff = unit[:, None, :] - self.evidence_units[None, :, :]
            squared = diff[:, :, 0] * diff[:, :, 0]
            for axis in range(1, int(diff.shape[2])):  # in order, as score_routing sums them
                squared = squared + diff[:, :, axis] * diff[:, :, axis]
            distance = torch.sqrt(squared)
            for k in range(K):
                column = self.evidence_scores[:, k]
                valid = torch.nonzero(~torch.isnan(column)).flatten()
                if valid.numel() == 0:
                    continue
                d = distance.index_select(1, valid)
                take = min(self.neighbours, int(valid.numel()))
                order = torch.sort(d, dim=1, stable=True)[1][:, :take]
                weights = 1.0 / (torch.gather(d, 1, order) + self.distance_floor)
                values = column.index_select(0, valid)[order]
                total = torch.zeros(n, dtype=torch.float64)
                weight = torch.zeros(n, dtype=torch.float64)
                for j in range(take):
                    total = total + weights[:, j] * values[:, j]
                    weight = weight + weights[:, j]
                prediction[:, k] = total / weight
        known = ~torch.isnan(prediction)
        best = torch.where(known, prediction, torch.full_like(prediction, -float("inf")))
        top = best.max(dim=1).values
        tied = known & (prediction >= (top - self.tie_tolerance)[:, None])
        fallback_tied = tied.gather(1, fallback[:, None]).squeeze(1)
        first_tied = torch.argmax(tied.to(torch.int64), dim=1)
        return torch.where(known.any(dim=1) & ~fallback_tied, first_tied, fallback)


# ---------------------------------------------------------------- export


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    ts_out = _TorchScriptPolicy(ts_path).actions(obs)
    onnx_out = _OnnxPolicy(onnx_path).actions(obs)
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
                            ts_path.name: _sha256(ts_path),
                            onnx_path.name: _sha256(onnx_path),
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
        "sha256": {ts_path.name: _sha256(ts_path), onnx_path.name: _sha256(onnx_path)},
        "verification": checks,
    }


# ---------------------------------------------------------------- loader


class _Policy(Protocol):
    def actions(self, observations: NDArray[np.float32]) -> NDArray[np.float32]: ...


class _TorchScriptPolicy:
    def __init__(self, path: Path) -> None:
        self.module: Any = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        self.module.eval()

    def actions(self, observations: NDArray[np.float32]) -> NDArray[np.float32]:
        with torch.inference_mode():
            out = self.module(torch.as_tensor(observations, dtype=torch.float32))
        result: NDArray[np.float32] = out.cpu().numpy().astype(np.float32)
        return result


class _OnnxPolicy:
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
    policies: dict[int, _Policy]
    evidence: ScoreEvidence | None = None  # columns follow expert_ids (score-informed router)
    student: _Policy | None = None  # the distilled student (`pec distill`), if exported

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

    def open_policy(entry: dict[str, Any]) -> _Policy:
        name = entry["torchscript"] if runtime == "torchscript" else entry["onnx"]
        file = root / name
        if not file.is_file():
            raise InputError(f"bundle {root} lacks {name}; re-export the bundle")
        if _sha256(file) != entry["sha256"][name]:
            raise InputError(f"bundle {root}: {name} does not match its checksum; re-export it")
        return _TorchScriptPolicy(file) if runtime == "torchscript" else _OnnxPolicy(file)

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
