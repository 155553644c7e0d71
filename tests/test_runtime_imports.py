"""The runtime needs only the runtime dependencies: every module the daemon, the CLIs and the dashboard load imports
with the dev extras (pandas-ta, backtrader, pytest, ...) made unimportable, in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib

from tests.conftest import REPO_ROOT

RUNTIME_PACKAGES = ("agents", "config", "core", "strategies", "utils")
RUNTIME_SCRIPTS = ("main", "scripts.query_trades")
NOT_IMPORTED_AS_MODULES = {
    "core.dashboard.app"
}  # the Streamlit script: `streamlit run` executes it, nothing imports it
DEV_ONLY = ("pandas_ta", "backtrader", "pytest", "hypothesis", "playwright", "openapi_schema_validator")

PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys, traceback
    blocked, packages, scripts, skip = json.loads(sys.argv[1])
    for name in blocked:
        sys.modules[name] = None  # "import pandas_ta" now raises ImportError
    names = list(scripts)
    for package in packages:
        module = importlib.import_module(package)
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages(module.__path__, package + ".") if m.name not in skip]
    failures = {}
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            frames = [f.filename for f in traceback.extract_tb(exc.__traceback__)]
            failures[name] = {"error": str(exc), "frames": frames}
    print(json.dumps({"imported": names, "failures": failures}))
    """
)


def test_runtime_modules_when_dev_extras_are_unimportable_then_all_import() -> None:
    payload = json.dumps([DEV_ONLY, RUNTIME_PACKAGES, RUNTIME_SCRIPTS, sorted(NOT_IMPORTED_AS_MODULES)])
    done = subprocess.run(
        [sys.executable, "-c", PROBE, payload], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result["imported"]) > 50  # the walk found the project's modules
    assert {name: failure["error"] for name, failure in result["failures"].items()} == {}


def test_pyproject_when_read_then_dev_only_libraries_are_no_runtime_dependency() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {
        dep.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for dep in project["dependencies"]
    }
    assert "pandas-ta" not in runtime and "backtrader" not in runtime
    assert any(dep.startswith("pandas-ta") for dep in project["optional-dependencies"]["dev"])
