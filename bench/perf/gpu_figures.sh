#!/usr/bin/env bash
# Every GPU figure in one run (under 8 minutes on one H100/H200), from the repository root:
#   bench/perf/gpu_figures.sh [--out results/perf]
# Creates .venv with the test extras on first use (reusing a system torch where there is one).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv --system-site-packages .venv
  .venv/bin/pip install -q -e ".[test]"
fi
exec .venv/bin/python -m bench.perf.gpu_figures "$@"
