#!/usr/bin/env bash
# Collect every wheel a pec job needs into DIR, for an offline host (no network there).
#   bash scripts/wheelhouse.sh DIR [--python 3.12] [--platform TAG]... [--no-torch]
# Run it where the package index is reachable. DIR then holds pec itself (a wheel of this
# checkout), the project's runtime dependencies at the versions of requirements.lock (dev
# tools left out), resolved for the target Python and platform (default: this interpreter;
# with --python, manylinux x86_64 unless --platform says otherwise), and requirements.txt
# listing them. --no-torch leaves torch out, for a host with its own (CUDA) build of
# torch 2.13. Install on the offline host with `bash scripts/setup.sh --offline DIR`.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: bash scripts/wheelhouse.sh DIR [--python 3.12] [--platform TAG]... [--no-torch]"
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || { echo "$usage" >&2; exit 2; }
dir=$1
shift
pyver=""
platforms=()
no_torch=0
while [ $# -gt 0 ]; do
  case $1 in
    --python)
      [ $# -ge 2 ] && [[ $2 =~ ^3\.[0-9]+$ ]] || {
        echo "--python: pass a version like 3.12; $usage" >&2
        exit 2
      }
      pyver=$2
      shift 2
      ;;
    --platform)
      [ $# -ge 2 ] || { echo "--platform: pass a wheel tag like manylinux_2_28_x86_64" >&2; exit 2; }
      platforms+=("$2")
      shift 2
      ;;
    --no-torch) no_torch=1; shift ;;
    *) echo "unknown option '$1'; $usage" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "wheelhouse.sh needs Python >= 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 2
fi
target=()
if [ -n "$pyver" ] || [ ${#platforms[@]} -gt 0 ]; then
  [ ${#platforms[@]} -gt 0 ] || platforms=(manylinux_2_28_x86_64 manylinux2014_x86_64)
  [ -n "$pyver" ] || pyver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  target=(--python-version "$pyver" --implementation cp)
  for p in "${platforms[@]}"; do target+=(--platform "$p"); done
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "building the pec wheel" >&2
# from a copy of the package sources, so that no build/ folder is left in (or reused from) here
mkdir "$work/src"
cp -r pyproject.toml README.md pec flows "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$PYTHON" -m pip wheel -q --no-deps -w "$work" "$work/src" >&2
wheel=$(ls "$work"/pec-*.whl)
echo "resolving the job's dependencies${pyver:+ for Python $pyver} (requirements.lock pins)" >&2
"$PYTHON" -m pip install -q --dry-run --ignore-installed --only-binary=:all: "${target[@]}" \
  --report "$work/report.json" -c requirements.lock "$wheel" >&2
"$PYTHON" - "$work/report.json" "$no_torch" > "$work/requirements.txt" <<'EOF'
import json
import sys

report, no_torch = json.load(open(sys.argv[1])), sys.argv[2] == "1"
for item in sorted(report["install"], key=lambda i: i["metadata"]["name"].lower()):
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if name == "pec" or (no_torch and name.lower() == "torch"):
        continue
    print(f"{name}=={version}")
EOF
echo "downloading $(wc -l < "$work/requirements.txt") wheels into $dir" >&2
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: "${target[@]}" -d "$dir" \
  -r "$work/requirements.txt" >&2
cp "$wheel" "$dir/"
{ cat "$work/requirements.txt"; echo "pec==$(basename "$wheel" | cut -d- -f2)"; } > "$dir/requirements.txt"
size=$(du -sh "$dir" | cut -f1)
torch_note=""
[ "$no_torch" = 1 ] && torch_note=" (no torch: the host must have torch 2.13)"
echo "wheelhouse $dir: $(ls "$dir"/*.whl | wc -l) wheels, $size$torch_note"
