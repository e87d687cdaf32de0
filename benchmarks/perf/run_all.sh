#!/usr/bin/env bash
# Every performance benchmark, in order, writing its section of docs/PERFORMANCE.md (36 min measured on 2 quiet
# CPU cores). Arguments are passed to every script, e.g. --device cuda or --threads 2. Run from anywhere: it runs
# each script from the repository root as `python -m benchmarks.perf.NAME`.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
for script in matmul_training samplers selfcond_ratio speculative_matched memory scaling compile_speedup; do
  echo "== python -m benchmarks.perf.$script $*"
  "$PY" -m "benchmarks.perf.$script" "$@"
done
