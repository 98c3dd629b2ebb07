"""The run's coverage and when the run stops.

One seeded Monte-Carlo point set per run (`coverage_seed`) measures the coverage of init,
refit and stopping; `stop_reason` ends the run at max_pec_iterations or the coverage target.
"""

from __future__ import annotations

from pec.maths.coverage import coverage as mc_coverage
from pec.maths.seeds import derive_seed
from pec.runs.config import PECConfig
from pec.runs.run import Run
from pec.runs.state import PECState


def coverage_seed(config: PECConfig) -> int:
    """One seeded Monte-Carlo point set for init, refit and stopping (PEC_DETAILS: do better)."""
    return derive_seed(config.seed, "coverage")


def state_coverage(run: Run, state: PECState) -> float:
    """Coverage on the run's recorded Monte-Carlo point set (the config's for older runs)."""
    seed = state.coverage_seed if state.coverage_seed is not None else coverage_seed(run.config)
    return mc_coverage(state.expert_mus(), state.expert_variances(), run.space, seed=seed)


def latest_coverage(state: PECState) -> float | None:
    return state.coverage[-1].coverage if state.coverage else None


def stop_reason(config: PECConfig, state: PECState) -> str | None:
    """Why the run is finished, or None if another iteration should run."""
    if state.iteration >= config.max_pec_iterations:
        return f"reached max_pec_iterations={config.max_pec_iterations}"
    cov = latest_coverage(state)
    if cov is not None and cov >= config.coverage_target:
        return f"coverage {cov:.3f} reached coverage_target={config.coverage_target}"
    return None
