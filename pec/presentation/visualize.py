"""Step 4: render the run's plots into the store. Soft: a plot failure is logged, never raised."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from pec.errors import StateError
from pec.presentation.plots import PlotExpert, plot_coverage_curve, plot_gaussians
from pec.runs import layout, run_records
from pec.runs.state import PECState
from pec.runs.store import Store

log = logging.getLogger(__name__)


def _experts_now(state: PECState) -> list[PlotExpert]:
    return [
        PlotExpert(
            id=e.id,
            mu=np.asarray(e.mu, dtype=float),
            variance=np.asarray([e.sigma[i][i] for i in range(state.dim)], dtype=float),
            designs=state.designs_array(e.id),
        )
        for e in state.experts
    ]


def _experts_at(state: PECState, iteration: int) -> list[PlotExpert]:
    """The Gaussians active during iteration N's evaluation: history[N], designs prefix n_designs."""
    entries = [h for h in state.history if h.iteration == iteration]
    if not entries:
        raise StateError(
            f"--itr {iteration}: the run has no history entry for iteration {iteration} "
            f"(completed iterations: {state.iteration}); pick one below {state.iteration}"
        )
    snapshot = entries[0]
    return [
        PlotExpert(
            id=s.id,
            mu=np.asarray(s.mu, dtype=float),
            variance=np.asarray([s.sigma[i][i] for i in range(state.dim)], dtype=float),
            designs=state.designs_array(s.id)[: s.n_designs],
        )
        for s in snapshot.experts_snapshot
    ]


def _leg_range(state: PECState) -> tuple[float, float] | None:
    """The leg axis of a 3-D run (its plots are 3-D), None for 2-D."""
    leg = state.design_space.get("leg")
    return None if leg is None else (float(leg[0]), float(leg[1]))


def _frontier(
    store: Store, run_name: str, iteration: int, K: int, keys: tuple[str, ...] = ("GCR", "spcf")
) -> tuple[np.ndarray, np.ndarray] | None:
    designs = run_records.read_candidates(store, run_name, iteration, keys)
    scores = run_records.read_scores(store, run_name, iteration)
    if designs is None or scores is None:
        return None
    source = store.uri(layout.scores_key(run_name, iteration))
    matrix = np.full((K, len(designs)), np.nan)
    for k, row in enumerate(scores["scores"][:K]):
        if row is not None:
            who = f"{source}: expert {k}"
            matrix[k] = run_records.check_levels(row, len(designs), who, StateError)
    return designs, matrix


def render_initial(store: Store, state: PECState) -> str:
    key = layout.initial_plot_key(state.run_name)
    png = plot_gaussians(
        tuple(state.design_space["GCR"]),  # type: ignore[arg-type]
        tuple(state.design_space["spcf"]),  # type: ignore[arg-type]
        _experts_now(state) if not state.history else _experts_at(state, 0),
        title=f"{state.run_name}: initial Gaussians",
        leg_range=_leg_range(state),
    )
    store.write_bytes(key, png)
    return key


def render_iteration(
    store: Store, state: PECState, iteration: int, *, frontier: bool = True
) -> list[str]:
    """iter_<N>_frontier.png (Gaussians at eval time + frontier) and after_iter_<N>_current.png."""
    gcr = tuple(state.design_space["GCR"])
    spcf = tuple(state.design_space["spcf"])
    K = len(state.experts)
    written: list[str] = []
    keys = tuple(state.design_space)
    data = _frontier(store, state.run_name, iteration, K, keys) if frontier else None
    png = plot_gaussians(
        gcr,  # type: ignore[arg-type]
        spcf,  # type: ignore[arg-type]
        _experts_at(state, iteration),
        title=f"{state.run_name}: iteration {iteration} frontier",
        candidates=None if data is None else data[0],
        scores=None if data is None else data[1],
        leg_range=_leg_range(state),
    )
    key = layout.frontier_plot_key(state.run_name, iteration)
    store.write_bytes(key, png)
    written.append(key)
    # The "after" plot shows the Gaussians that came out of iteration N's refit.
    later = [h for h in state.history if h.iteration == iteration + 1]
    after_experts = _experts_at(state, iteration + 1) if later else _experts_now(state)
    png = plot_gaussians(
        gcr,  # type: ignore[arg-type]
        spcf,  # type: ignore[arg-type]
        after_experts,
        title=f"{state.run_name}: after iteration {iteration}",
        leg_range=_leg_range(state),
    )
    key = layout.after_plot_key(state.run_name, iteration)
    store.write_bytes(key, png)
    written.append(key)
    return written


def render_coverage(store: Store, state: PECState, target: float | None) -> str | None:
    if not state.coverage:
        return None
    png = plot_coverage_curve(
        [c.iteration for c in state.coverage], [c.coverage for c in state.coverage], target
    )
    key = layout.coverage_plot_key(state.run_name)
    store.write_bytes(key, png)
    return key


def render_all_soft(
    store: Store, state: PECState, iteration: int | None, coverage_target: float | None
) -> list[str]:
    """Every plot for the state (and iteration N if given); failures are logged, not raised."""
    written: list[str] = []

    def initial() -> list[str]:
        return [render_initial(store, state)]

    def frontier() -> list[str]:
        return [] if iteration is None else render_iteration(store, state, iteration)

    def coverage() -> list[str]:
        key = render_coverage(store, state, coverage_target)
        return [key] if key else []

    jobs: list[tuple[str, Callable[[], list[str]]]] = [
        ("initial_state", initial),
        (f"iteration {iteration}", frontier),
        ("coverage", coverage),
    ]
    for what, job in jobs:
        try:
            written.extend(job())
        except Exception as exc:  # visualisation never aborts a run
            log.warning("plot %s failed (the run continues): %s", what, exc)
    return written
