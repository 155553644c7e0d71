# make demo : create .venv if needed, install, replay two years of bundled bars (offline)
# make test : create .venv if needed, install with dev extras, run the test suite
# make dashboard : the read-only monitoring dashboard on http://127.0.0.1:8501/ (DASHBOARD_ARGS="--db URL --port N")
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test setup bench dashboard clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	@set -e; \
	if [ ! -x "$(PY)" ] || ! "$(PY)" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then \
		PYBIN=$$(bash scripts/find_python.sh) || exit 1; \
		echo "Creating $(VENV) with $$PYBIN ($$($$PYBIN --version))"; \
		rm -rf "$(VENV)"; "$$PYBIN" -m venv "$(VENV)"; \
	fi; \
	"$(PY)" -m pip install --quiet --disable-pip-version-check --upgrade pip; \
	"$(PY)" -m pip install --quiet --disable-pip-version-check -e '.[dev]'; \
	touch "$(STAMP)"

demo: setup
	$(PY) main.py demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

dashboard: setup
	$(PY) main.py dashboard $(DASHBOARD_ARGS)

bench: setup
	$(PY) scripts/bench_replay.py

clean-venv:
	rm -rf $(VENV)
