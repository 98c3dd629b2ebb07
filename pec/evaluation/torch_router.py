"""The bundle's router as TorchScript (``router.pt``): nearest centre and score-informed, in torch.

A deployable twin of `pec.maths.routing.route` and `pec.maths.score_routing.route_by_scores`
that needs neither numpy nor pec on the robot.
"""

from __future__ import annotations

import numpy as np
import torch

from pec.errors import InputError
from pec.maths.design_space import FloatArray, IntArray
from pec.maths.score_routing import (
    DEFAULT_NEIGHBOURS,
    DISTANCE_FLOOR,
    TIE_TOLERANCE,
    ScoreEvidence,
)


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
