"""Where every artefact of a run lives, as store keys relative to the store root.

One module owns the layout so that the flow, the jobs, the plots and the CLI can never
disagree about a path. It follows the reference sheet's ``logs/pec/<run_name>/`` tree;
checkpoints live under the run too (``checkpoints/expert_<k>/iter_<N>/``) so that one
store holds everything a run needs to resume. Keys always use ``/``.
"""

from __future__ import annotations

from pec.errors import InputError
from pec.runs.run_names import validate_run_name

STATE_FILE = "pec_state.json"
CONFIG_FILE = "pec_config.yaml"
BEST_CHECKPOINT_FILE = "model_best.pt"
LAST_CHECKPOINT_FILE = "model_last.pt"


def _index(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _stem(name: str, value: str) -> str:
    """A single, safe path segment (plot names, design-file stems)."""
    if (
        not isinstance(value, str)
        or not value
        or value in (".", "..")
        or any(c in value for c in "/\\\0")
    ):
        raise InputError(f"{name} {value!r} must be one non-empty path segment without / or \\")
    return value


def run_prefix(run_name: str) -> str:
    """``<run>/``: every key of the run starts with this."""
    return f"{validate_run_name(run_name)}/"


def state_key(run_name: str) -> str:
    return run_prefix(run_name) + STATE_FILE


def config_key(run_name: str) -> str:
    return run_prefix(run_name) + CONFIG_FILE


def frontier_dir(run_name: str, iteration: int) -> str:
    return run_prefix(run_name) + f"frontier_evals/iter_{_index('iteration', iteration)}/"


def candidates_key(run_name: str, iteration: int) -> str:
    return frontier_dir(run_name, iteration) + "candidates.json"


def scores_key(run_name: str, iteration: int) -> str:
    return frontier_dir(run_name, iteration) + "scores.json"


def assignments_key(run_name: str, iteration: int) -> str:
    return frontier_dir(run_name, iteration) + "assignments.json"


def expert_frontier_results_key(run_name: str, iteration: int, expert_id: int) -> str:
    k = _index("expert_id", expert_id)
    return frontier_dir(run_name, iteration) + f"expert_{k}_results.json"


def samples_dir(run_name: str, expert_id: int, iteration: int) -> str:
    k = _index("expert_id", expert_id)
    n = _index("iteration", iteration)
    return run_prefix(run_name) + f"expert_{k}/samples/iter_{n}/"


def samples_keys(run_name: str, expert_id: int, iteration: int) -> tuple[str, str]:
    """(gcr.npy, spcf.npy) keys of the per-environment training samples."""
    base = samples_dir(run_name, expert_id, iteration)
    return base + "gcr.npy", base + "spcf.npy"


def leg_samples_key(run_name: str, expert_id: int, iteration: int) -> str:
    """leg.npy key of a 3-D run's per-environment training samples (leg length, metres)."""
    return samples_dir(run_name, expert_id, iteration) + "leg.npy"


def checkpoint_dir(run_name: str, expert_id: int, iteration: int) -> str:
    k = _index("expert_id", expert_id)
    n = _index("iteration", iteration)
    return run_prefix(run_name) + f"checkpoints/expert_{k}/iter_{n}/"


def trunk_dir(run_name: str) -> str:
    """``checkpoints/trunk/``: the shared policy every expert forks from (`trunk_share`)."""
    return run_prefix(run_name) + "checkpoints/trunk/"


def trunk_samples_dir(run_name: str) -> str:
    """``trunk/samples/``: the trunk's per-environment designs (gcr.npy, spcf.npy(, leg.npy))."""
    return run_prefix(run_name) + "trunk/samples/"


def trunk_samples_keys(run_name: str) -> tuple[str, str]:
    """(gcr.npy, spcf.npy) keys of the trunk's per-environment training samples."""
    base = trunk_samples_dir(run_name)
    return base + "gcr.npy", base + "spcf.npy"


def job_checkpoint_dir(run_name: str, expert_id: int, iteration: int, role: str = "expert") -> str:
    """Where a training job writes: the trunk's folder for role ``trunk``, else the expert's."""
    if role == "trunk":
        return trunk_dir(run_name)
    return checkpoint_dir(run_name, expert_id, iteration)


def best_checkpoint_key(run_name: str, expert_id: int, iteration: int) -> str:
    return checkpoint_dir(run_name, expert_id, iteration) + BEST_CHECKPOINT_FILE


def last_checkpoint_key(run_name: str, expert_id: int, iteration: int) -> str:
    return checkpoint_dir(run_name, expert_id, iteration) + LAST_CHECKPOINT_FILE


def train_log_prefix(run_name: str, expert_id: int, iteration: int) -> str:
    """Prefix under which a training job uploads its TensorBoard event files."""
    return checkpoint_dir(run_name, expert_id, iteration) + "tb/"


def train_result_key(run_name: str, expert_id: int, iteration: int) -> str:
    return checkpoint_dir(run_name, expert_id, iteration) + "result.json"


def plots_dir(run_name: str) -> str:
    return run_prefix(run_name) + "plots/"


def plots_key(run_name: str, name: str) -> str:
    """Key of a plot file called ``name`` (e.g. ``coverage.png``) in the run's plots folder."""
    return plots_dir(run_name) + _stem("plot name", name)


def initial_plot_key(run_name: str) -> str:
    return plots_key(run_name, "initial_state.png")


def frontier_plot_key(run_name: str, iteration: int) -> str:
    return plots_key(run_name, f"iter_{_index('iteration', iteration)}_frontier.png")


def after_plot_key(run_name: str, iteration: int) -> str:
    return plots_key(run_name, f"after_iter_{_index('iteration', iteration)}_current.png")


def coverage_plot_key(run_name: str) -> str:
    return plots_key(run_name, "coverage.png")


def final_eval_dir(run_name: str, designs_stem: str) -> str:
    """``final_eval/<designs_stem>/``: holds ``expert_<k>_results.json`` and ``summary.json``."""
    return run_prefix(run_name) + f"final_eval/{_stem('designs_stem', designs_stem)}/"


def final_eval_expert_key(run_name: str, designs_stem: str, expert_id: int) -> str:
    k = _index("expert_id", expert_id)
    return final_eval_dir(run_name, designs_stem) + f"expert_{k}_results.json"


def final_eval_summary_key(run_name: str, designs_stem: str) -> str:
    return final_eval_dir(run_name, designs_stem) + "summary.json"


def prefect_results_prefix(run_name: str) -> str:
    """Where Prefect persists task results (JSON) for this run's cache keys."""
    return run_prefix(run_name) + "prefect-results/"


def lease_key(run_name: str, iteration: int) -> str:
    """Who runs iteration N right now (pec.runs.store.lease): one small JSON object."""
    return run_prefix(run_name) + f"leases/iter_{_index('iteration', iteration)}.json"
