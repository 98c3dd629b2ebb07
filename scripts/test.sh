#!/usr/bin/env bash
# The whole test suite as CI runs it: lint, types, then every test (slow ones included),
# Isaac Lab's on the CPU too (the extra is installed and Warp's kernel cache warmed first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh isaaclab
# Warp compiles Isaac Lab's CPU kernels once per machine (minutes cold; cached in ~/.cache/warp).
nice -n 10 .venv/bin/python -m pec.backends.isaaclab.warmup
# PostgreSQL (Debian's package) for the PostgreSQL-backed Prefect server of the deployment
# tests (tests/support/postgres.py), installed where it is missing.
if ! command -v initdb >/dev/null && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q postgresql >/dev/null || { apt-get update -q && apt-get install -y -q postgresql >/dev/null; }
  else
    echo "PostgreSQL is missing and this is not root: apt-get install postgresql" >&2
  fi
fi
export PREFECT_SERVER_ANALYTICS_ENABLED=false MPLBACKEND=Agg
.venv/bin/ruff check pec flows tests benchmarks
.venv/bin/ruff format --check pec flows tests benchmarks
.venv/bin/mypy
.venv/bin/python scripts/import_cycles.py
exec .venv/bin/pytest -q -ra "$@"
