# Pix Me! — two commands on a fresh clone: `make demo` and `make test`.
# Python 3.12, the functions' runtime (infra/functions.tf: python312): a
# python3.12 on PATH that really runs as 3.12 (a pyenv shim refuses unless that
# version is selected), else pyenv's newest installed 3.12.x. PYTHON=...
# overrides; it must be a 3.12 as well.
PYENV_ROOT ?= $(HOME)/.pyenv
ifndef PYTHON
PYTHON := $(or $(shell python3.12 -c 'import sys; assert sys.version_info[:2] == (3, 12); print(sys.executable)' 2>/dev/null),$(lastword $(shell ls -d $(PYENV_ROOT)/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V)))
endif
PYVER := $(if $(PYTHON),$(shell $(PYTHON) -c 'import platform; print(platform.python_version())' 2>/dev/null))
ifeq ($(filter 3.12.%,$(PYVER)),)
NEED_PYTHON = $(error Python 3.12 is required: $(if $(PYTHON),$(PYTHON) is $(or $(PYVER),not runnable),found no python3.12 on PATH nor in $(PYENV_ROOT)/versions). Install it with `pyenv install 3.12` (Debian bookworm has no python3.12 package) or name one with PYTHON=/path/to/python3.12)
endif
VENV := .venv
RVENV := .venv-renderer
PY := $(VENV)/bin/python
# The stamps carry the interpreter's version: another version rebuilds the venvs.
VENV_STAMP := $(VENV)/.installed-$(PYVER)
RVENV_STAMP := $(RVENV)/.installed-$(PYVER)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test unit integration e2e lint up bench check lock clean docs fuzz

# A venv is made anew whenever its lock or the interpreter's version changes,
# so it holds exactly what the lock names, nothing left from an older one.
define fresh-venv
	rm -rf $(1)
	$(PYTHON) -m venv $(1)
endef

# Installs the hash-locked files (pip's hash-checking mode) with the pip the
# interpreter ships, since an upgrade would be the one unhashed download.
# --no-deps because a lock names every dependency already (and pip < 23.3
# rejects a locked package that a dependency asks for with an extra,
# google-auth[requests]); `pip check` then proves the lock complete.
# The pixme package itself (pyproject.toml) goes in editable, without a build
# environment of its own: setuptools comes from the lock as well.
$(VENV_STAMP): requirements.txt pyproject.toml
	$(NEED_PYTHON)
	$(call fresh-venv,$(VENV))
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

# The renderer has its own environment: mediapipe pins protobuf<5, which would
# drag the Google client libraries back if they shared one.
$(RVENV_STAMP): local/renderer/requirements.txt local/renderer/requirements-nodeps.txt
	$(NEED_PYTHON)
	$(call fresh-venv,$(RVENV))
	$(RVENV)/bin/python -m pip install --quiet --require-hashes --no-deps -r local/renderer/requirements.txt
	$(RVENV)/bin/python -m pip check
	$(RVENV)/bin/python -m pip install --quiet --require-hashes --no-deps -r local/renderer/requirements-nodeps.txt
	touch $@

# Regenerates every lock from its .in (LOCK_ARGS=--upgrade moves the unpinned
# dependencies forward; otherwise the versions already locked are kept). The
# target is Cloud Functions' python312 (Ubuntu 22.04, glibc 2.35, x86_64); each
# locked version carries the hashes of all its files, wheels and sdist.
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.12 \
	--python-platform x86_64-manylinux_2_35 --custom-compile-command "make lock" $(LOCK_ARGS)
lock: $(VENV_STAMP)
	$(UV_COMPILE) functions/requirements.in -o functions/requirements.txt
	$(UV_COMPILE) requirements-dev.in -o requirements.txt
	$(UV_COMPILE) local/renderer/requirements.in -o local/renderer/requirements.txt
	$(UV_COMPILE) --no-deps local/renderer/requirements-nodeps.in -o local/renderer/requirements-nodeps.txt

setup: $(VENV_STAMP) $(RVENV_STAMP)
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

# The environments and Chromium are independent downloads and installs: built
# side by side (-j), the clean-clone set-up takes about half as long.
test:
	$(MAKE) -j4 setup $(CHROMIUM)
	$(PY) -m pytest tests -q

unit: $(VENV_STAMP)
	$(PY) -m pytest tests/unit -q

integration: setup
	$(PY) -m pytest tests/integration -q

e2e: setup $(CHROMIUM)
	$(PY) -m pytest tests/e2e -q

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check functions local tests bench
	$(VENV)/bin/mypy

up: setup
	$(PY) -m local.stack up

bench: setup
	$(PY) bench/run.py

# The README's performance and reliability figures: every benchmark and
# `make load`, three times each, medians beside their targets (~25 min).
.PHONY: figures
figures: setup
	$(PY) bench/figures.py $(FIGURES_ARGS)

# The demo's flow against a deployment (local/smoke.py): the URLs from
# `terraform -chdir=infra output`, or from the *_URL variables when set
# (after `make up`: source out/stack/stack.env && make smoke).
.PHONY: smoke
smoke: $(VENV_STAMP)
	$(PY) -m local.smoke $(SMOKE_ARGS)

check: lint test

# schemathesis from openapi.json against a fresh local stack, many examples per
# operation (make test runs FUZZ_EXAMPLES=8).
FUZZ_EXAMPLES ?= 200
fuzz: setup
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/e2e/test_fuzz.py -q

# Rewrite what is derived from the code: README.md's settings table and openapi.json.
docs: $(VENV_STAMP)
	$(PY) -m local.docs

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache

# The infrastructure scanners (requirements-scan.txt) have an environment of
# their own: checkov pins many packages that must not decide .venv's. The
# unit tests run them (tests/unit/test_infra_scan.py), so whatever runs those
# tests needs it.
SVENV := .venv-scan
$(SVENV)/.installed: requirements-scan.txt
	$(PYTHON) -m venv $(SVENV)
	$(SVENV)/bin/python -m pip install --quiet --upgrade pip
	$(SVENV)/bin/python -m pip install --quiet -r requirements-scan.txt
	touch $@

setup unit: $(SVENV)/.installed

# Simulated users with faults against a fresh local stack, then the store
# audit (local/load.py); the last line is `audit: pass` or `audit: FAIL <what>`.
# Not part of make test (tests/e2e/test_load_smoke.py runs a short one).
LOAD_USERS ?= 4
LOAD_SECONDS ?= 60
.PHONY: load
load: setup
	LOAD_USERS=$(LOAD_USERS) LOAD_SECONDS=$(LOAD_SECONDS) $(PY) -m local.load $(LOAD_ARGS)
