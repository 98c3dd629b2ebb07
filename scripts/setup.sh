#!/usr/bin/env bash
# Create or refresh .venv with the pinned dependencies. Idempotent: skips work when up to date.
#   bash scripts/setup.sh            the project (MuJoCo backend, flows, tests)
#   bash scripts/setup.sh isaaclab   ... plus the kit-less Isaac Lab 3.0 extra (Newton physics)
#   bash scripts/setup.sh --offline DIR   pec and its job dependencies from a wheelhouse made by
#                                         scripts/wheelhouse.sh, with no network (no index used)
# VENV=path puts the environment elsewhere (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ "${1:-}" = --offline ]; then
  dir=${2:-}
  if [ -z "$dir" ] || ! [ -f "$dir/requirements.txt" ]; then
    echo "--offline: pass a wheelhouse folder made by 'bash scripts/wheelhouse.sh DIR' (it holds requirements.txt)" >&2
    exit 2
  fi
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "pec needs Python >= 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
    exit 2
  fi
  torch_wheel=$(ls "$dir"/torch-*.whl 2>/dev/null || true)
  has_torch='import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'
  if [ -z "$torch_wheel" ] && ! "$PYTHON" -c "$has_torch"; then
    echo "the wheelhouse has no torch (--no-torch) and $PYTHON cannot import torch; install the host's torch 2.13 build first, or make the wheelhouse without --no-torch" >&2
    exit 2
  fi
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  if [ -z "$torch_wheel" ] && ! "$VENV/bin/python" -c "$has_torch"; then
    # a --no-torch wheelhouse: the venv sees the interpreter's packages, the host's own torch
    sed -i 's/^include-system-site-packages = false/include-system-site-packages = true/' "$VENV/pyvenv.cfg"
  fi
  echo "installing pec from the wheelhouse $dir (no network)" >&2
  # Only the wheelhouse: no index, no find-links or index from pip's config or environment.
  env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
    "$VENV/bin/python" -m pip install -q --no-index --find-links "$dir" -r "$dir/requirements.txt"
  "$VENV/bin/python" -c 'import mujoco, rsl_rl, torch, pec.jobs.run' || {
    echo "the offline install is incomplete: pec's job modules do not import; rebuild the wheelhouse" >&2
    exit 1
  }
  echo "installed: $VENV/bin/python -m pec.jobs SPEC runs a job; $VENV/bin/pec the CLI" >&2
  exit 0
fi
extra=${1:-}
if [ -n "$extra" ] && [ "$extra" != isaaclab ]; then
  echo "unknown extra '$extra'; run 'bash scripts/setup.sh', 'bash scripts/setup.sh isaaclab' or 'bash scripts/setup.sh --offline DIR'" >&2
  exit 2
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "pec needs Python >= 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 2
fi
[ -x "$VENV"/bin/python ] || "$PYTHON" -m venv "$VENV"
stamp="$VENV"/.pec-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setting up $VENV (first time: a few minutes)" >&2
  "$VENV"/bin/python -m pip install -q --upgrade pip
  # torch first, pinned: the CPU wheel; anything else would pull gigabytes of CUDA packages.
  "$VENV"/bin/python -m pip install -q "torch==2.13.0"
  # mujoco 4.0 (pinned before) split into packages that mujoco 3.12 does not have; drop them
  # first, or their files would outlive the downgrade inside the mujoco package.
  "$VENV"/bin/python -m pip uninstall -y -q mujoco-core mujoco-studio 2>/dev/null || true
  "$VENV"/bin/python -m pip install -q -c requirements.lock -e '.[dev]'
  echo "$want" > "$stamp"
  rm -f "$VENV"/.pec-isaaclab-installed
fi
[ "$extra" = isaaclab ] || exit 0
stamp="$VENV"/.pec-isaaclab-installed
want=$(cat pyproject.toml requirements.lock requirements-isaaclab.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "installing the Isaac Lab 3.0 extra into $VENV (about 2 GB, a few minutes)" >&2
"$VENV"/bin/python -m pip install -q -c requirements.lock -r requirements-isaaclab.txt
# isaaclab 3.0.0 declares Python 3.12 and torch 2.11; pec runs it on Python 3.11 with the
# project's torch (tested here, outside NVIDIA's support matrix): hence no deps, no check.
"$VENV"/bin/python -m pip install -q --no-deps --ignore-requires-python "isaaclab==3.0.0"
echo "$want" > "$stamp"
