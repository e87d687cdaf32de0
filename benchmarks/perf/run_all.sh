#!/usr/bin/env bash
# Every performance benchmark, in order, writing its section of docs/PERFORMANCE.md (about 50 min on 2 quiet
# CPU cores). Arguments are passed to every script, e.g. --device cuda or --threads 2. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
for script in matmul_training samplers selfcond_ratio speculative_matched memory scaling compile_speedup; do
  echo "== benchmarks/perf/$script.py $*"
  "$PY" "benchmarks/perf/$script.py" "$@"
done
