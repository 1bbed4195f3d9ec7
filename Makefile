# Set-up and checks. Every target creates or reuses .venv and installs what it needs.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ray-macaw-installed

.PHONY: install demo test test-slow lint bench

install: $(STAMP)

# torch first, from the CPU wheel pip finds on this disk: an unpinned torch pulls a CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The whole pipeline on point-robot (collect, meta-train, evaluate, fine-tune); see README.
demo: install
	$(VENV)/bin/ray-macaw demo

test: install
	$(PY) -m pytest -m "not slow" -q

test-slow: install
	$(PY) -m pytest -m slow -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy ray_macaw

bench: install
	for script in benchmarks/[!_]*.py; do $(PY) $$script || exit 1; done
