"""scmdm's experiments: one script per experiment, each writing a section of its page in docs/results/ (the perf
scripts in benchmarks/perf/: of docs/PERFORMANCE.md) and its numbers to benchmarks/results/. Run a script from the
repository root as ``python -m benchmarks.NAME`` (``--help`` says what it takes); benchmarks/README.md lists them
all, with what each measures, how long it takes and the page it writes. Shared helpers: ``benchmarks.common``."""
