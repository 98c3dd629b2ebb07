#!/usr/bin/env bash
# Create or refresh .venv with the pinned dependencies. Idempotent: skips work when up to date.
#   bash scripts/setup.sh            the project (MuJoCo backend, flows, tests)
#   bash scripts/setup.sh isaaclab   ... plus the kit-less Isaac Lab 3.0 extra (Newton physics)
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
if [ -n "$extra" ] && [ "$extra" != isaaclab ]; then
  echo "unknown extra '$extra'; run 'bash scripts/setup.sh' or 'bash scripts/setup.sh isaaclab'" >&2
  exit 2
fi
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "pec needs Python >= 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.pec-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setting up .venv (first time: a few minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned: the CPU wheel; anything else would pull gigabytes of CUDA packages.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  # mujoco 4.0 (pinned before) split into packages that mujoco 3.12 does not have; drop them
  # first, or their files would outlive the downgrade inside the mujoco package.
  .venv/bin/python -m pip uninstall -y -q mujoco-core mujoco-studio 2>/dev/null || true
  .venv/bin/python -m pip install -q -c requirements.lock -e '.[dev]'
  echo "$want" > "$stamp"
  rm -f .venv/.pec-isaaclab-installed
fi
[ "$extra" = isaaclab ] || exit 0
stamp=.venv/.pec-isaaclab-installed
want=$(cat pyproject.toml requirements.lock requirements-isaaclab.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "installing the Isaac Lab 3.0 extra into .venv (about 2 GB, a few minutes)" >&2
.venv/bin/python -m pip install -q -c requirements.lock -r requirements-isaaclab.txt
# isaaclab 3.0.0 declares Python 3.12 and torch 2.11; pec runs it on Python 3.11 with the
# project's torch (tested here, outside NVIDIA's support matrix): hence no deps, no check.
.venv/bin/python -m pip install -q --no-deps --ignore-requires-python "isaaclab==3.0.0"
echo "$want" > "$stamp"
