# Pix Me! — two commands on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
RVENV := .venv-renderer
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test unit integration e2e lint up bench check clean

$(VENV)/.installed: requirements.txt functions/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# The renderer has its own environment: mediapipe pins protobuf<5, which would
# drag the Google client libraries back if they shared one.
$(RVENV)/.installed: local/renderer/requirements.txt
	$(PYTHON) -m venv $(RVENV)
	$(RVENV)/bin/python -m pip install --quiet --upgrade pip
	$(RVENV)/bin/python -m pip install --quiet -r local/renderer/requirements.txt
	$(RVENV)/bin/python -m pip install --quiet --no-deps mediapipe==0.10.21
	touch $@

setup: $(VENV)/.installed $(RVENV)/.installed
	$(PY) -m local.stack check

demo: setup
	$(PY) -m local.demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest tests -q

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit -q

integration: setup
	$(PY) -m pytest tests/integration -q

e2e: setup
	$(PY) -m pytest tests/e2e -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check functions local tests bench
	$(VENV)/bin/mypy

up: setup
	$(PY) -m local.stack up

bench: setup
	$(PY) bench/run.py

# The demo's flow against a deployment (local/smoke.py): the URLs from
# `terraform -chdir=infra output`, or from the *_URL variables when set
# (after `make up`: source out/stack/stack.env && make smoke).
.PHONY: smoke
smoke: $(VENV)/.installed
	$(PY) -m local.smoke $(SMOKE_ARGS)

check: lint test

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
