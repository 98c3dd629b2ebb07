#!/usr/bin/env bash
# The whole test suite as CI runs it: lint, types, then every test (slow ones included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PREFECT_SERVER_ANALYTICS_ENABLED=false MPLBACKEND=Agg
.venv/bin/ruff check pec flows tests benchmarks
.venv/bin/ruff format --check pec flows tests benchmarks
.venv/bin/mypy
.venv/bin/python scripts/import_cycles.py
exec .venv/bin/pytest -q -ra "$@"
