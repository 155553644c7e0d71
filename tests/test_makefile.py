"""`make setup` / `make setup-dev` say what they do: the project's Makefile run by make in a scratch copy, with a
stand-in interpreter whose `-m pip install` prints what pip prints (so nothing is downloaded)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

STUB_PYTHON = """#!/bin/sh
# stands in for .venv/bin/python: `-c ...` succeeds (a Python >= 3.12), `-m pip install ARGS` logs ARGS and prints
# pip's lines, or fails when the file FAIL exists beside it
here=$(dirname "$0")
case "$1" in
  -c) exit 0 ;;
  -m)
    echo "$*" >> "$here/pip-calls"
    if [ -e "$here/FAIL" ]; then echo "ERROR: No matching distribution found for nosuch"; exit 1; fi
    echo "Obtaining file:///project"
    echo "Collecting alpha>=1 (from agent-trader==0.1.0)"
    echo "  Downloading alpha-1.0-py3-none-any.whl (10 kB)"
    echo "Collecting beta (from agent-trader==0.1.0)"
    echo "Installing collected packages: alpha, beta, agent-trader"
    echo "Successfully installed agent-trader-0.1.0 alpha-1.0 beta-2.0"
    exit 0 ;;
esac
exit 3
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO_ROOT / "scripts" / "find_python.sh", tmp_path / "scripts" / "find_python.sh")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB_PYTHON)
    python.chmod(0o755)
    return tmp_path


def _make(project: Path, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target], cwd=project, capture_output=True, text=True, timeout=120, check=False
    )


def test_make_setup_when_installing_then_announces_each_step_and_condenses_pip(project: Path) -> None:
    done = _make(project, "setup")
    assert done.returncode == 0, done.stderr
    assert "==> Installing the project and its runtime dependencies into .venv" in done.stdout
    assert "    installed 3 packages" in done.stdout
    assert "Collecting alpha" not in done.stdout  # pip's own lines stay in the log
    assert "Collecting alpha" in (project / ".venv" / "pip.log").read_text()
    calls = (project / ".venv" / "bin" / "pip-calls").read_text().splitlines()
    assert len(calls) == 1 and calls[0].endswith("-e .")  # the demo needs no dev extras


def test_make_setup_dev_when_installing_then_adds_the_dev_extras(project: Path) -> None:
    done = _make(project, "setup-dev")
    assert done.returncode == 0, done.stderr
    assert "==> Installing the dev extras" in done.stdout
    calls = (project / ".venv" / "bin" / "pip-calls").read_text().splitlines()
    assert [c.rsplit(" ", 1)[-1] for c in calls] == [".", ".[dev]"]


def test_make_setup_when_pip_fails_then_says_so_with_the_end_of_the_log(project: Path) -> None:
    (project / ".venv" / "bin" / "FAIL").touch()
    done = _make(project, "setup")
    assert done.returncode != 0
    assert "error: pip install failed; the end of .venv/pip.log:" in done.stderr
    assert "ERROR: No matching distribution found for nosuch" in done.stderr
    assert not (project / ".venv" / ".installed").exists()
