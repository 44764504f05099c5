SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
PY = $(VENV)/bin/python
PYTEST_ARGS ?=
PYTHONS ?=
JOBS ?= 2

.DEFAULT_GOAL := help

.PHONY: help install graphviz browser screenshots test test-all lint types check wheel-check fmt demo \
	bench docs clean chaos chaos-ci

help:
	@echo "statesaga make targets:"
	@echo "  install   create $(VENV) and install the package with all extras (+ graphviz)"
	@echo "  graphviz  install the graphviz 'dot' binary via apt-get if missing"
	@echo "  browser   install Debian's chromium and chromium-driver via apt-get if missing"
	@echo "            (the inspector's browser tests drive them; tests/test_ui_browser.py)"
	@echo "  test      run the test suite (extra args: PYTEST_ARGS=...)"
	@echo "  test-all  run it with nox on Python 3.11, 3.12 and 3.13, JOBS=2 at a time"
	@echo "            (some: PYTHONS='3.12 3.13'; JOBS=1 shows each run's output as it goes)"
	@echo "  lint      ruff format --check + ruff check"
	@echo "  types     mypy (strict)"
	@echo "  check     lint, types, test (sequentially)"
	@echo "  wheel-check  build the wheel, install it in a fresh venv, test a saga it generates"
	@echo "  fmt       ruff format + ruff check --fix"
	@echo "  demo      run examples/demo.py"
	@echo "  bench     run tests/benchmarks/run.py (another Python: PYTHON=python3.12 VENV=.venv-3.12)"
	@echo "  screenshots  retake the inspector's screenshots in docs/ui/ (headless chromium)"
	@echo "  chaos     kill workers and cut the broker under 2,000 runs for 60 s; print throughput"
	@echo "  chaos-ci  the same, short (500 runs, 15 s of chaos; 200 for throughput): what CI runs"
	@echo "  docs      render the diagrams the docs show into docs/diagrams (sagas, modules)"
	@echo "  clean     remove venv, caches and build artifacts"

$(VENV)/.installed: pyproject.toml
	@if [ ! -x "$(PY)" ]; then $(PYTHON) -m venv "$(VENV)"; fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,postgres,prometheus,otel,logs,messaging,ui]'
	@touch "$@"

graphviz:
	@if ! command -v dot >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
		if [ "$$(id -u)" -eq 0 ]; then SUDO=""; \
		elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; \
		else SUDO="__none__"; fi; \
		if [ "$$SUDO" = "__none__" ]; then \
			echo "note: not root and sudo unavailable; cannot apt-get install graphviz"; \
		else \
			echo "installing graphviz via apt-get"; \
			$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq graphviz \
				|| echo "note: apt-get install graphviz failed"; \
		fi; \
	fi; \
	if ! command -v dot >/dev/null 2>&1; then \
		echo "note: graphviz 'dot' not found on PATH; rendering to images will be unavailable"; \
	fi

# The inspector's browser tests drive these (Selenium is told their paths: it downloads nothing).
browser:
	@if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } \
			&& command -v apt-get >/dev/null 2>&1; then \
		if [ "$$(id -u)" -eq 0 ]; then SUDO=""; \
		elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; \
		else SUDO="__none__"; fi; \
		if [ "$$SUDO" = "__none__" ]; then \
			echo "note: not root and sudo unavailable; cannot apt-get install chromium"; \
		else \
			echo "installing chromium and chromium-driver via apt-get"; \
			$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver \
				|| echo "note: apt-get install chromium chromium-driver failed"; \
		fi; \
	fi; \
	if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "note: /usr/bin/chromium or /usr/bin/chromedriver missing; the browser tests skip"; \
	fi

install: $(VENV)/.installed graphviz

test: install browser
	$(PY) -m pytest -q $(PYTEST_ARGS)

# noxfile.py finds pyenv's interpreters; one missing fails under CI=true and is skipped otherwise.
# Two runs at a time take ~60% of the time one after the other on 2 cores (they mostly wait).
test-all: install
	$(VENV)/bin/nox -s tests -j $(JOBS) $(if $(strip $(PYTHONS)),--python $(PYTHONS)) \
		-- $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff format --check statesaga tests examples docs noxfile.py
	$(VENV)/bin/ruff check statesaga tests examples docs noxfile.py

types: install
	$(VENV)/bin/mypy

check:
	$(MAKE) lint
	$(MAKE) types
	$(MAKE) test

# The wheel, not the checkout: templates must ship inside it and `statesaga new` must find them.
wheel-check: install
	@set -euo pipefail; \
	tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	venv="$$tmp/venv/bin"; \
	echo "building the wheel"; \
	$(PY) -m pip wheel -q --no-deps -w "$$tmp/dist" .; \
	echo "installing it in a fresh venv (with pytest, ruff, mypy)"; \
	$(PY) -m venv "$$tmp/venv"; \
	"$$venv/python" -m pip install -q "$$tmp"/dist/statesaga-*.whl pytest ruff mypy; \
	cd "$$tmp"; \
	"$$venv/python" -c 'import statesaga.scaffold as s, sys; \
		d = str(s.template_dir()); print("templates:", d); sys.exit("site-packages" not in d)'; \
	"$$venv/statesaga" new wheel_saga --steps book_flight,book_hotel,charge_card; \
	"$$venv/python" -m wheel_saga; \
	cd wheel_saga; \
	"$$venv/python" main.py; \
	if "$$venv/python" main.py --fail charge_card; then echo "--fail did not fail"; exit 1; fi; \
	"$$venv/python" -m pytest -q -p no:cacheprovider; \
	"$$venv/ruff" check --no-cache .; \
	"$$venv/ruff" format --check --no-cache .; \
	"$$venv/mypy" --strict .; \
	echo "wheel-check: ok"

fmt: install
	$(VENV)/bin/ruff format statesaga tests examples docs noxfile.py
	$(VENV)/bin/ruff check --fix statesaga tests examples docs noxfile.py

demo: install
	$(PY) examples/demo.py

bench: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) tests/benchmarks/run.py

# Tests that retake them; the staleness check (tests/test_ui_browser.py) then passes again.
screenshots: install browser
	STATESAGA_SCREENSHOTS=1 $(PY) -m pytest -q tests/test_ui_browser.py

docs: install
	$(PY) docs/diagrams.py
	$(PY) tests/module_graph.py

clean:
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache .hypothesis \
		build dist *.egg-info htmlcov .coverage
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Real worker and relay processes killed while they drive runs (tests/test_chaos.py): the full
# version takes a few minutes and prints the throughput table; chaos-ci is the short one CI runs.
chaos: install
	STATESAGA_CHAOS=full $(PY) -m pytest -q -s tests/test_chaos.py $(PYTEST_ARGS)

chaos-ci: install
	STATESAGA_CHAOS=ci $(PY) -m pytest -q -s tests/test_chaos.py $(PYTEST_ARGS)
