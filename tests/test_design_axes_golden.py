"""d = 2 is unchanged: a 2-D run's files are byte-identical to what main wrote before design
spaces gained axes (digests in tests/data/golden_2d.json, see tests/support/golden_2d.py)."""

from __future__ import annotations

import json
from pathlib import Path

from support.golden_2d import CONFIGS, GOLDEN_FILE, all_digests

from pec.runs.config import build_config


def test_a_2d_run_writes_the_same_bytes_as_before(tmp_path: Path) -> None:
    golden = json.loads(GOLDEN_FILE.read_text())
    found = all_digests(tmp_path.resolve())
    assert set(found) == set(golden) == set(CONFIGS)
    for name in CONFIGS:
        assert sorted(found[name]) == sorted(golden[name]), name  # the same files
        changed = [key for key in golden[name] if found[name][key] != golden[name][key]]
        assert changed == [], f"{name}: {changed}"


def test_a_2d_config_records_no_design_axis_key() -> None:
    config = build_config(CONFIGS["fps"])
    assert "leg_range" not in config.effective()
    assert "leg_range" not in config.to_yaml()
