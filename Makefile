# make run  — create/reuse .venv, install, run the main job on the bundled default
# make test — create/reuse .venv, install, run the tests
# make docs — the docs site (MkDocs Material) into site/; open site/index.html
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# the tested dependency set, exact versions (see `make lock`)
LOCK   := requirements.lock
PIP_VERSION := 26.3

.PHONY: run test test-fast test-latest lock bench fuzz install clean docs docs-serve

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "pip==$(PIP_VERSION)"

# Everything at the versions CI passed with, then lrdsl itself (no dependency resolution, no build
# isolation: hatchling and editables come from the lock too). torch==2.13.0+cpu is the CPU build already on
# these machines' disk; a bare "torch" would pull a CUDA build.
$(STAMP): $(PY) pyproject.toml $(LOCK)
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

# The newest versions pyproject.toml allows, in a venv of their own: catches the next PyYAML before
# users do. `make lock` freezes that set into $(LOCK) once it passes.
LATEST := .venv-latest
$(LATEST)/.installed: pyproject.toml
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q "pip==$(PIP_VERSION)"
	$(LATEST)/bin/python -m pip install -q "torch==2.13.0"
	$(LATEST)/bin/python -m pip install -q -e ".[all,dev]"
	touch $@

test-latest: $(LATEST)/.installed
	$(LATEST)/bin/python -m mypy
	$(LATEST)/bin/python -m pytest -q

lock: $(LATEST)/.installed
	{ echo "# The tested dependency set: written by \`make lock\` (pip freeze of a fresh venv that installed"; \
	  echo "# torch==2.13.0, then .[all,dev] at the newest allowed versions). make run, make test and CI"; \
	  echo "# install exactly this."; \
	  $(LATEST)/bin/python -m pip freeze --exclude-editable; } > $(LOCK)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m lrdsl train

test: $(STAMP)
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

# the edit-test loop: everything but the tests marked slow (training runs, subprocesses); not CI's
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# the standing hostile suite at scale: 25,000 random expressions of the whole language through
# parse, plan, curve, the float path and torch, half of the accepted ones through optax f32/f64
# and Keras too; prints the counts and exits non-zero on any bug (tests/fuzz.py --help)
fuzz: $(STAMP)
	$(PY) tests/fuzz.py --n 25000 --seed 0 --share 0.5 --jobs 2

bench: $(STAMP)
	$(PY) bench/core.py
	$(PY) bench/torch_step.py
	$(PY) bench/torch_compile.py
	$(PY) bench/torch_reports.py
	$(PY) bench/keras_fit.py
	$(PY) bench/optax_step.py
	$(PY) bench/train_overhead.py
	$(PY) bench/find.py
	bash bench/cli.sh

# the docs site, from docs/ and mkdocs.yml: the gallery is drawn from the catalogue and the API
# pages read from the docstrings while it builds; --strict makes a broken link or reference fail.
# The two variables silence a banner about MkDocs 2 that one plugin prints.
DOCS_ENV := NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true
docs: $(STAMP)
	$(DOCS_ENV) $(PY) -m mkdocs build --strict --site-dir site

# the same site served with live reload at http://127.0.0.1:8000
docs-serve: $(STAMP)
	$(DOCS_ENV) $(PY) -m mkdocs serve --strict

clean:
	rm -rf $(VENV) $(LATEST) build dist *.egg-info .pytest_cache .mypy_cache outputs multirun site
