"""scripts/install_service.sh on this machine, as written: a throw-away system user, a throw-away prefix, the units
written to a throw-away directory; then the installed units' command lines run as that unprivileged user (the daemon
for one offline iteration on synthetic bars, then the health check) and systemd-analyze verifies the installed units.
Needs root (it creates a user) and a package index for pip; everything it creates is removed afterwards."""

from __future__ import annotations

import configparser
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from collections.abc import Iterator

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

INSTALL = REPO_ROOT / "scripts" / "install_service.sh"
UNITS = ("agent-trader.service", "agent-trader-health.service", "agent-trader-health.timer")


def _skip_reason() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root: the install creates a system user"
    missing = [tool for tool in ("useradd", "userdel", "runuser", "bash") if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)}"
    if shutil.which("patchelf") is None and not _world_readable(Path(sys.base_prefix)):
        return f"this machine's Python ({sys.base_prefix}) is not readable by other users and patchelf, which the install needs to copy it, is missing (apt-get install patchelf)"
    # the installed venv holds the runtime dependencies only: the daemon must import without the dev extras
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['pandas_ta'] = None; import main"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"main.py does not import without the dev extras yet: {probe.stderr.strip().splitlines()[-1]}"
    return None


def _world_readable(path: Path) -> bool:
    return all(parent.stat().st_mode & 0o001 for parent in (path, *path.parents))


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return parser


@pytest.fixture
def sandbox() -> Iterator[tuple[str, Path]]:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    user = f"attest{secrets.token_hex(3)}"
    root = Path(tempfile.mkdtemp(prefix="agent-trader-install-", dir="/tmp"))
    root.chmod(0o755)  # the service user must reach the prefix (pytest's tmp_path is private to root)
    try:
        yield user, root
    finally:
        subprocess.run(["userdel", user], capture_output=True, check=False)
        subprocess.run(["groupdel", user], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _as_user(user: str, command: list[str], cwd: Path, unit_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``command`` as systemd would start it: as ``user``, in ``cwd``, with only the unit's environment."""
    env = [f"{k}={v}" for k, v in {"PATH": "/usr/bin:/bin", **unit_env}.items()]
    return subprocess.run(
        ["runuser", "-u", user, "--", "env", "-i", *env, *command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_install_script_when_run_as_root_then_the_installed_units_run_as_the_unprivileged_user(
    sandbox: tuple[str, Path],
) -> None:
    user, root = sandbox
    prefix, unit_dir = root / "agent-trader", root / "units"
    env_file = root / "settings.env"
    env_file.write_text("DATA_PROVIDER=synthetic\n", encoding="utf-8")

    install = subprocess.run(
        ["bash", str(INSTALL), "--prefix", str(prefix), "--user", user, "--env-file", str(env_file), "--unit-dir", str(unit_dir), "--no-start"],
        cwd=root, capture_output=True, text=True, timeout=1500, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    assert f"creating system user {user}" in install.stdout

    daemon = _unit(unit_dir / "agent-trader.service")["Service"]
    health = _unit(unit_dir / "agent-trader-health.service")["Service"]
    assert daemon["User"] == user and daemon["WorkingDirectory"] == str(prefix)
    assert set(daemon["ReadWritePaths"].split()) == {f"{prefix}/var", f"{prefix}/logs"}
    unit_env = dict(item.split("=", 1) for item in shlex.split(daemon["Environment"]))
    interpreter = Path(shlex.split(daemon["ExecStart"])[0])
    assert interpreter == prefix / ".venv" / "bin" / "python"
    assert str(interpreter.resolve()).startswith(str(prefix))  # no link into root's home

    # .env as installed: the user's own, unreadable to others
    stat = (prefix / ".env").stat()
    assert (stat.st_mode & 0o777) == 0o600 and stat.st_uid != 0

    # the daemon's command line, as the user, for one iteration (DATA_PROVIDER=synthetic comes from .env)
    run = _as_user(user, [*shlex.split(daemon["ExecStart"]), "--offline", "--once"], prefix, unit_env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "data synthetic" in run.stdout
    database = prefix / "var" / "trading.db"
    assert database.exists() and database.stat().st_uid == stat.st_uid

    check = _as_user(user, [*shlex.split(health["ExecStart"]), "--json"], prefix, unit_env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["healthy"] is True

    # the code is not the service's to change
    touch = _as_user(user, ["/usr/bin/touch", str(prefix / "main.py")], prefix, unit_env)
    assert touch.returncode != 0

    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        verify = subprocess.run(
            [analyze, "verify", "--man=no", *(str(unit_dir / name) for name in UNITS)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert verify.returncode == 0, verify.stdout + verify.stderr
