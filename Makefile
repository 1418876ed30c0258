# Two commands: `make book` (strict build of the executed book into _build/html) and `make test` (unit tests and
# every notebook as a test). Both create .venv from requirements.txt when it is missing or out of date.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Notebook kernels inherit these: one BLAS thread pool of the machine's size, no oversubscription.
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: book test test-pages test-seeds sweep venv clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -c "import ngdlib, torch, jupyter_book, nbval, sphinx_proof, playwright, papermill, distributed"
	touch $(STAMP)

# Strict: every page re-read (--all: Sphinx would otherwise skip unchanged pages, and with them the execution of
# notebooks whose library code changed), every notebook executed (execute_notebooks: force), warnings are errors
# (-W), nitpicky references (-n). Records for the dashboard come from this build's executions only.
book: $(STAMP)
	rm -rf _build/records
	$(VENV)/bin/jupyter-book build . --path-output . --builder html --all -W -n --keep-going

# Unit tests, doctests and every chapter notebook (nbval --nbval-lax: all cells run, asserts decide).
test: $(STAMP)
	$(PY) -m pytest

# Browser test of the built pages (run after `make book`; it never builds or executes anything itself). Skips with a
# message where there is no build or no chromium, unless REQUIRE_BROWSER=1 (as in .ci/run).
test-pages: $(STAMP)
	$(PY) -m pytest -p no:nbval -o addopts="" tests/pages

# Every notebook with several seeds injected after its parameters cell (slow: one full run per seed).
# SEEDS=1,2,3 by default; SEED_NOTEBOOKS=<substring> restricts the notebooks.
test-seeds: $(STAMP)
	$(PY) -m pytest -p no:nbval -o addopts="" tests/seeds

# A sweep over seeds (and scales, devices) on a Dask cluster, with papermill; results in _build/sweeps/$(NAME)/.
# NAME=seeds SEEDS=0-4 SCALE=ci DEVICE=cpu by default; NOTEBOOKS=Z-T4,Z-R4 (claim IDs or paths) restricts the
# notebooks; WORKERS=N worker processes (default one per core), or SCHEDULER=tcp://host:8786 for an existing cluster.
sweep: $(STAMP)
	$(PY) -m ngdlib.sweep --name $(or $(NAME),seeds) --seeds $(or $(SEEDS),0-4) --scale $(or $(SCALE),ci) \
	  --device $(or $(DEVICE),cpu) $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS)) $(if $(WORKERS),--workers $(WORKERS)) \
	  $(if $(SCHEDULER),--scheduler $(SCHEDULER))

clean:
	rm -rf _build
