#!/usr/bin/env bash
# The main job on the embedded default: MuJoCo BALLU on the CPU, local store ./runs,
# ephemeral Prefect. Extra arguments go to `python -m flows` (e.g. --run_name NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PREFECT_SERVER_ANALYTICS_ENABLED=false MPLBACKEND=Agg
exec .venv/bin/python -m flows --config configs/embedded.yaml --store runs --run_name "${PEC_RUN_NAME:-demo}" "$@"
