# Two commands: `make book` (strict build of the executed book into _build/html) and `make test` (unit tests and
# every notebook as a test). Both create .venv from requirements.txt when it is missing or out of date.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Notebook kernels inherit these: one BLAS thread pool of the machine's size, no oversubscription.
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: book test lint test-pages test-seeds test-oracles test-mutants bench-gpu sweep venv venv-oracles clean

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

# Unit tests, doctests and every chapter notebook (nbval --nbval-lax: all cells run, asserts decide), on JOBS
# pytest-xdist workers (default 2, one per core of the CI machine), each file whole on one worker (--dist loadfile:
# a notebook's cells must run in order in one kernel) and one BLAS/OpenMP thread per worker and kernel, so that two
# workers never oversubscribe the cores (two 2-thread LAPACK calls side by side ran 300x slower here).
JOBS ?= 2
test: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n $(JOBS) --dist loadfile

# Lint the library: pyflakes, pycodestyle and the docstring rules of pyproject.toml (every public name documented,
# every Args section complete), so that the API reference of the book has no holes.
lint: $(STAMP)
	$(VENV)/bin/ruff check ngdlib tests _ext

# Browser test of the built pages (run after `make book`; it never builds or executes anything itself). Skips with a
# message where there is no build or no chromium, unless REQUIRE_BROWSER=1 (as in .ci/run).
test-pages: $(STAMP)
	$(PY) -m pytest -p no:nbval -o addopts="" tests/pages

# Every notebook with several seeds injected after its parameters cell (slow: one full run per seed).
# SEEDS=far:3 by default (three seeds drawn afresh from [10^4, 10^6), far from the seeds 0-49 the tolerances were
# examined at; the drawn seeds appear in the test IDs), or SEEDS=5,6,7; SEED_NOTEBOOKS=<substring> restricts.
test-seeds: $(STAMP)
	$(PY) -m pytest -p no:nbval -o addopts="" tests/seeds

# The GPU table of chapters/perf/cost (run on a machine with CUDA; needs only torch and this checkout, no .venv).
bench-gpu:
	PYTHONPATH=. $(PYTHON) -m ngdlib.bench --device cuda --json chapters/perf/bench-cuda.json

# The field's own libraries as independent oracles (neural-tangents + jax, curvlinops, mpmath), in a separate
# environment created on first use: neural-tangents 0.6.5 needs numpy < 2. See requirements-oracles.txt for the
# `--no-deps` step and the empty neural_tangents.experimental (only it needs tensorflow).
OVENV  := .venv-oracles
OPY    := $(OVENV)/bin/python
OSTAMP := $(OVENV)/.installed

venv-oracles: $(OSTAMP)

$(OSTAMP): requirements-oracles.txt pyproject.toml
	test -x $(OPY) || $(PYTHON) -m venv $(OVENV)
	$(OPY) -m pip install --quiet --disable-pip-version-check -r requirements-oracles.txt
	$(OPY) -m pip install --quiet --disable-pip-version-check --no-deps neural-tangents==0.6.5 \
	    backpack-for-pytorch==1.7.1 curvlinops-for-pytorch==3.0.1
	$(OPY) -c "import importlib.util as u, os; p = u.find_spec('neural_tangents').submodule_search_locations[0]; \
	    open(os.path.join(p, 'experimental', '__init__.py'), 'w').write('# emptied by make venv-oracles\\n')"
	$(OPY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(OPY) -c "import ngdlib, torch, numpy, jax, neural_tangents, curvlinops, mpmath"
	touch $(OSTAMP)

# ngdlib against neural-tangents (analytic and empirical NTK), curvlinops (GGN, K-FAC) and mpmath, on inputs and
# seeds of their own; prints the comparison table (oracle | ngdlib function | max relative difference | tolerance).
test-oracles: $(OSTAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(OPY) -m pytest -p no:cacheprovider -o addopts="" -W ignore::DeprecationWarning tests/oracles -q

# Mutation testing: each mutant of tests/mutants/catalogue.yml in its own temporary copy of the repository, against the
# notebooks of its claims, then the unit tests of its module (JOBS=2 at a time, one BLAS thread each). MUTANTS=id1,id2
# or CLAIMS=Z-T4 select a subset; the results are merged into tests/mutants/score.json (committed; the dashboard and
# the page "Mutation testing" show them). Slow: about an hour on two cores for the whole catalogue.
test-mutants: $(STAMP)
	$(PY) -m tests.mutants.run

# A sweep over seeds (and scales, devices) on a Dask cluster, with papermill; results in _build/sweeps/$(NAME)/.
# NAME=seeds SEEDS=0-4 SCALE=ci DEVICE=cpu by default; NOTEBOOKS=Z-T4,Z-R4 (claim IDs or paths) restricts the
# notebooks; WORKERS=N worker processes (default one per core), or SCHEDULER=tcp://host:8786 for an existing cluster.
sweep: $(STAMP)
	$(PY) -m ngdlib.sweep --name $(or $(NAME),seeds) --seeds $(or $(SEEDS),0-4) --scale $(or $(SCALE),ci) \
	  --device $(or $(DEVICE),cpu) $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS)) $(if $(WORKERS),--workers $(WORKERS)) \
	  $(if $(SCHEDULER),--scheduler $(SCHEDULER))

clean:
	rm -rf _build
