"""Training budgets: the PPO iterations each expert gets at an iteration, and the rule behind them.

The split itself is `pec.maths.budget`; this reads what it needs from the store (the previous
iteration's outright wins) and says which budgets the state records.
"""

from __future__ import annotations

from pec.iteration.frontier import read_scores, score_matrix, scores_width
from pec.iteration.trunk import trunk_plan
from pec.maths.budget import budget_by_share, budget_by_wins, won_counts
from pec.runs.run import Run
from pec.runs.state import BudgetRecord, PECState


def training_budget(run: Run, state: PECState) -> BudgetRecord:
    """PPO iterations per expert at the state's iteration, and the rule that set them.

    Iteration 0: `max_iterations_iter0` each, or what the trunk leaves them (rule "trunk").
    Later: `max_iterations` each (rule "equal"), or with `budget_rule: wins` / `proportional`
    the split of `pec.maths.budget.budget_by_wins` / `budget_by_share` on the outright wins of
    the previous iteration's frontier.
    """
    cfg = run.config
    K = len(state.experts)
    iteration = state.iteration
    if iteration == 0:
        trunk, per_expert = trunk_plan(run)
        rule = "trunk" if trunk > 0 else "equal"
        return BudgetRecord(iteration=0, rule=rule, ppo_iterations=[per_expert] * K)
    if cfg.budget_rule == "equal":
        return BudgetRecord(
            iteration=iteration, rule="equal", ppo_iterations=[cfg.max_iterations] * K
        )
    won = wins_of(run, state, iteration - 1)
    split_by = budget_by_wins if cfg.budget_rule == "wins" else budget_by_share
    split = [cfg.max_iterations] * K if won is None else split_by(won, cfg.max_iterations)
    return BudgetRecord(
        iteration=iteration, rule=cfg.budget_rule, ppo_iterations=split, won_counts=won
    )


def records_budget(run: Run, budget: BudgetRecord) -> bool:
    """Whether the state records this budget: in runs with a trunk or `budget_rule: wins`
    (runs with neither keep the original's equal split and their state files as before)."""
    return budget.rule != "equal" or run.config.budget_rule != "equal" or trunk_plan(run)[0] > 0


def wins_of(run: Run, state: PECState, iteration: int) -> list[int] | None:
    """Frontier candidates each expert won outright at `iteration` (`won_counts`: ties are
    nobody's), None when that iteration has no scores."""
    if iteration < 0:
        return None
    scores = read_scores(run, iteration)
    if scores is None:
        return None
    return won_counts(score_matrix(scores, len(state.experts), scores_width(scores)))
