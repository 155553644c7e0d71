# make demo : create .venv if needed, install the runtime dependencies, replay two years of bundled bars (offline)
# make test : create .venv if needed, install with the dev extras, run the test suite
# make lint : ruff's lint and format checks (what .ci/run runs before the tests)
# make typecheck : mypy over the packages, scripts/ and main.py ([tool.mypy] in pyproject.toml)
# make test-fast : the tests not marked slow (no crash loops, no service install)
# make dashboard : the read-only monitoring dashboard on http://127.0.0.1:8501/ (DASHBOARD_ARGS="--db URL --port N")
# Every step says what it does; pip's output is condensed to one progress line (the full log: .venv/pip.log).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
SHELL := /bin/bash

.PHONY: demo test test-fast lint typecheck setup setup-dev bench dashboard clean-venv

# pip install "$(1)" with one self-updating progress line (on a terminal; a line per package otherwise); on failure
# the end of the log.
define pip_install
	echo "==> Installing $(2) into $(VENV) (pip; the first time takes a few minutes)"; \
	"$(PY)" -m pip install --disable-pip-version-check --progress-bar off $(1) > "$(VENV)/pip.log" 2>&1 < /dev/null & \
	pid=$$!; tty=0; [ -t 1 ] && tty=1; seen=0; \
	while kill -0 $$pid 2>/dev/null; do \
		n=$$(grep -c '^Collecting' "$(VENV)/pip.log" 2>/dev/null || true); \
		last=$$(grep -E '^ *(Collecting|Downloading|Building|Installing collected)' "$(VENV)/pip.log" 2>/dev/null | tail -n 1 | sed 's/^ *//' | cut -c1-70); \
		if [ "$$tty" = 1 ]; then printf '\r    %s packages resolved; %s\033[K' "$${n:-0}" "$$last"; \
		elif [ "$${n:-0}" != "$$seen" ]; then echo "    $${n:-0} packages resolved; $$last"; seen=$${n:-0}; fi; \
		sleep 1; \
	done; \
	if [ "$$tty" = 1 ]; then printf '\r\033[K'; fi; \
	if ! wait $$pid; then \
		echo "error: pip install failed; the end of $(VENV)/pip.log:" >&2; tail -n 25 "$(VENV)/pip.log" >&2; exit 1; \
	fi; \
	grep -E '^Successfully installed' "$(VENV)/pip.log" | awk '{ print "    installed " NF - 2 " packages" }'; \
	grep -q '^Successfully installed' "$(VENV)/pip.log" || echo "    nothing new to install"
endef

setup: $(STAMP)

setup-dev: $(DEV_STAMP)

$(STAMP): pyproject.toml
	@set -e; \
	if [ ! -x "$(PY)" ] || ! "$(PY)" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then \
		PYBIN=$$(bash scripts/find_python.sh) || exit 1; \
		echo "==> Creating $(VENV) with $$PYBIN ($$($$PYBIN --version))"; \
		rm -rf "$(VENV)"; "$$PYBIN" -m venv "$(VENV)"; \
		echo "==> Upgrading pip in $(VENV)"; \
		"$(PY)" -m pip install --quiet --disable-pip-version-check --upgrade pip; \
	fi; \
	$(call pip_install,-e .,the project and its runtime dependencies); \
	touch "$(STAMP)"

$(DEV_STAMP): $(STAMP) pyproject.toml
	@set -e; \
	$(call pip_install,-e '.[dev]',the dev extras (pytest and the reference libraries)); \
	touch "$(DEV_STAMP)"

demo: setup
	@echo "==> Replaying the last two years of the bundled bars: $(PY) main.py demo"
	@$(PY) main.py demo

test: setup-dev
	@echo "==> Running the tests: $(PY) -m pytest $(PYTEST_ARGS)"
	@$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup-dev
	@echo "==> Running the fast tests: $(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)"
	@$(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)

lint: setup-dev
	@echo "==> Lint: $(PY) -m ruff check . && $(PY) -m ruff format --check . && $(PY) -m mypy"
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy

typecheck: setup-dev
	@echo "==> Type check: $(PY) -m mypy (the files and options of [tool.mypy] in pyproject.toml)"
	@$(PY) -m mypy

dashboard: setup
	$(PY) main.py dashboard $(DASHBOARD_ARGS)

bench: setup-dev
	$(PY) scripts/bench_replay.py

clean-venv:
	rm -rf $(VENV)
