"""Zero-cost experts for flow runs started by a real Prefect worker (tests and benchmarks).

Python imports this module at start-up only where this folder is on PYTHONPATH, as the
scale test and bench_orchestration_scale.py set it for their worker. With
``PEC_TEST_ZERO_COST=1`` every job's backend becomes the zero-cost double
(pec.backends.zero_cost: no physics, tiny checkpoints), so what a run measures is
orchestration. With ``PEC_TEST_HOLD_DIR`` set too, the training of expert k (inside a
`pec-expert` flow run) waits after its first PPO iteration until the file ``train-<k>``
exists in that folder (at most 120 s): a test holds chosen experts "in flight".
"""

from __future__ import annotations

import os

if os.environ.get("PEC_TEST_ZERO_COST") == "1":
    import time
    from pathlib import Path

    import pec.backends.registry as _registry
    from pec.backends.base import TrainRequest
    from pec.backends.zero_cost import ZeroCostBackend

    _HOLD_LIMIT_S = 120.0

    class _HeldZeroCost(ZeroCostBackend):
        def on_iteration(self, request: TrainRequest, iteration: int) -> None:
            folder = os.environ.get("PEC_TEST_HOLD_DIR")
            if iteration != 1 or not folder:
                return
            from prefect.runtime import flow_run

            spec = flow_run.parameters.get("spec") or {}
            release = Path(folder) / f"train-{spec.get('expert_id')}"
            deadline = time.monotonic() + _HOLD_LIMIT_S
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.1)

    _real_get_backend = _registry.get_backend

    def _zero_cost_backend(name: str) -> object:
        if name in ("mujoco", "isaaclab"):
            return _HeldZeroCost(constant_level=0)
        return _real_get_backend(name)

    _registry.get_backend = _zero_cost_backend  # type: ignore[assignment]
