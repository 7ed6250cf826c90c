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

# The playground's browser test drives Debian's Chromium through Playwright;
# nothing downloads a browser of its own.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium

demo: setup
	$(PY) -m local.demo $(DEMO_ARGS)

test: setup $(CHROMIUM)
	$(PY) -m pytest tests -q

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit -q

integration: setup
	$(PY) -m pytest tests/integration -q

e2e: setup $(CHROMIUM)
	$(PY) -m pytest tests/e2e -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check functions local tests bench
	$(VENV)/bin/mypy

up: setup
	$(PY) -m local.stack up

bench: setup
	$(PY) bench/run.py

check: lint test

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
