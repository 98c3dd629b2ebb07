#!/bin/sh
# Container entry point of the pec images.
#   <spec.json> [--result <result.json>]   run one job: python -m pec.jobs ...
#   python|python3 ...                      run with the image's Python (the CUDA base's in the GPU image)
#   prefect ...                             the Prefect worker's `prefect flow-run execute`
#   anything else                           run as given (a shell, a debugging command)
set -eu
PYTHON="${PEC_PYTHON:-python}"
case "${1:-}" in
  "" | -* | *.json) exec "$PYTHON" -m pec.jobs "$@" ;;
  python | python3) shift; exec "$PYTHON" "$@" ;;
  prefect) shift; exec "$PYTHON" -m prefect "$@" ;;
  *) exec "$@" ;;
esac
