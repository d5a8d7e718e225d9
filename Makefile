# make run  — create/reuse .venv, install, run the main job on the bundled default
# make test — create/reuse .venv, install, run the tests
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch==2.13.0 is the CPU build already on these machines' disk; a bare "torch" would pull CUDA.
# It goes first, so that ".[all,dev]" (torch, keras, jax + optax, plot, train, lightning, hf; the
# test tools) keeps it.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m lrdsl train

test: $(STAMP)
	$(PY) -m mypy
	$(PY) -m pytest -q

# the edit-test loop: everything but the tests marked slow (training runs, subprocesses); not CI's
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) bench/core.py
	$(PY) bench/torch_step.py
	$(PY) bench/torch_compile.py
	$(PY) bench/keras_fit.py
	$(PY) bench/optax_step.py
	$(PY) bench/train_overhead.py
	$(PY) bench/find.py
	bash bench/cli.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache outputs multirun
