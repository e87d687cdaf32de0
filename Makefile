# Two commands do all the set-up on a fresh machine:
#   make demo   -- install, train a small MDM on QM9, post-train it vanilla and self-conditioned, sample
#                  1,000 molecules from each, print the metrics table
#   make test   -- install, lint, run the test suite
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip install --quiet --disable-pip-version-check
STAMP   = $(VENV)/.installed-v1

.PHONY: install demo test lint benchmark clean

install: $(STAMP)

# torch first (the local CPU build); otherwise a dependency pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[molecules,test]"
	$(PIP) --no-deps qm9pack==1.0.3 fcd-torch==1.0.7
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/scmdm demo --out runs/demo --selfcond-steps 200

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

test: $(STAMP) lint
	$(VENV)/bin/pytest -q -p no:cacheprovider

benchmark: $(STAMP)
	$(PY) benchmarks/qm9_base.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
