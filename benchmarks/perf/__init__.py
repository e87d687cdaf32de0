"""The performance benchmarks (``python -m benchmarks.perf.NAME``, or all of them: benchmarks/perf/run_all.sh), each
writing a section of docs/PERFORMANCE.md; shared helpers in ``benchmarks.perf.harness``."""
