"""The layer check of scripts/import_cycles.py: imports point down, or are named exceptions."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "import_cycles.py"


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_cycles", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_layers_rank_lowest_first() -> None:
    check = _checker()
    order = ["pec.errors", "pec.maths.refit", "pec.runs.config", "pec.backends.base"]
    order += ["pec.jobs.run", "pec.iteration.refit", "pec.evaluation.comparison"]
    order += ["pec.presentation.cli.main", "flows.pec_flow"]
    assert [check.layer(name) for name in order] == list(range(-1, 8))


def test_an_import_up_the_layers_is_reported() -> None:
    check = _checker()
    graph = {
        "pec.runs.config": {"pec.maths.refit", "pec.jobs.threads"},
        "pec.jobs.threads": {"pec.runs.config"},
        "pec.maths.refit": {"pec.errors"},
        "flows.tasks": {"pec.jobs.threads"},
    }
    assert check.upward_imports(graph) == [("pec.runs.config", "pec.jobs.threads")]


def test_the_repository_has_no_unlisted_upward_import_and_no_stale_exception() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout
    assert "0 import cycle(s), 0 upward import(s)" in done.stdout
