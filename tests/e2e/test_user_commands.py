"""What a user sees and runs: the offline live loop on data that cannot serve "now", `health` on an iteration without
usable data, the follow-up commands the project prints (run exactly as printed), one-line errors for bad input, the
`.env` typo warning and `reset` on an ACTIVE daemon — through ``main.main``/``query_trades.main`` or a subprocess."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import main
from config.settings import Settings
from core.runtime.app import SYNTHETIC_START
from core.kernel.calendar import MarketCalendar
from core.data.synthetic import SyntheticProvider
from core.persistence.db import open_database
from core.persistence.repository import Repository
from scripts import query_trades
from tests.conftest import BUNDLED_DAILY, REPO_ROOT
from tests.reporting.factories import RUN_1, build_ledger

MAIN = str(REPO_ROOT / "main.py")


@pytest.fixture(autouse=True)
def _logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A subprocess environment without the developer's settings."""
    settings = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings}
    env.update({"LOG_DIR": str(tmp_path / "logs"), "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def _fresh_data_dir(tmp_path: Path, *, keep_stale: bool, break_last_bar: bool = False) -> Path:
    """A data directory whose AAPL.csv ends at the latest completed session (synthetic bars) — with the other bundled
    symbols' real, stale files beside it when ``keep_stale``; with a negative last close when ``break_last_bar``."""
    data = tmp_path / "daily"
    if keep_stale:
        shutil.copytree(BUNDLED_DAILY, data)
    else:
        data.mkdir()
    frame = (
        SyntheticProvider(seed=7, start=SYNTHETIC_START, calendar=MarketCalendar())
        .history(["AAPL"], end=datetime.now(UTC))
        .frames["AAPL"]
    )
    frame = frame.rename(columns=str.capitalize)
    frame.index = frame.index.strftime("%Y-%m-%d")
    frame.index.name = "Date"
    if break_last_bar:
        frame.iloc[-1, frame.columns.get_loc("Close")] = -1.0
    frame.to_csv(data / "AAPL.csv")
    return data


# --- 2: the offline live loop works out of the box or refuses clearly; health tells the truth ----------------------


def test_run_offline_when_the_data_ends_before_the_latest_session_then_refuses_pointing_to_replay_and_synthetic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_DIR", str(BUNDLED_DAILY))  # the bundled bars end in 2021
    url = f"sqlite:///{tmp_path / 'stale.db'}"
    assert main.main(["run", "--offline", "--once", "--db", url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "DATA_DIR=" in err and "cannot serve the live loop" in err and "newest bar is 2021-" in err
    assert "replay" in err and "DATA_PROVIDER=synthetic" in err
    assert main.main(["health", "--db", url]) == 3  # nothing ran, no database was created: health says so, not healthy


def test_run_offline_when_synthetic_data_then_the_printed_command_runs_and_health_is_healthy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'synthetic.db'}"
    env = _env(tmp_path, DATA_PROVIDER="synthetic")
    run = subprocess.run([sys.executable, MAIN, "run", "--create-db", "--offline", "--iterations", "1", "--db", url],
                         env=env, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    health = subprocess.run([sys.executable, MAIN, "health", "--json", "--db", url],
                            env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert health.returncode == 0, health.stdout + health.stderr
    report = json.loads(health.stdout)
    assert report["healthy"] is True and report["data_quality"] == 1.0


def test_health_when_the_last_iteration_had_data_quality_under_the_threshold_then_unhealthy_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_DIR", str(_fresh_data_dir(tmp_path, keep_stale=True)))  # AAPL fresh, 5 symbols stale
    url = f"sqlite:///{tmp_path / 'q.db'}"
    assert main.main(["run", "--create-db", "--offline", "--once", "--db", url]) == 0
    capsys.readouterr()
    assert main.main(["health", "--db", url]) == 1
    out = capsys.readouterr().out
    assert out.startswith("UNHEALTHY: ")
    assert "data quality 17% under DATA_QUALITY_MIN 80%" in out and "1/6 symbols" in out


def test_health_when_the_last_iteration_had_no_usable_data_then_unhealthy_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_DIR", str(_fresh_data_dir(tmp_path, keep_stale=False, break_last_bar=True)))
    monkeypatch.setenv("SYMBOLS", "AAPL")
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main.main(["run", "--create-db", "--offline", "--once", "--db", url]) == 0
    capsys.readouterr()
    assert main.main(["health", "--json", "--db", url]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"] is False and report["symbols_ok"] == 0
    assert any(p.startswith("no usable data: the last iteration had 0/1 symbols") for p in report["problems"])


# --- 4: every printed command runs as printed ------------------------------------------------------------------


def _printed_commands(output: str, marker: str) -> list[str]:
    """The command lines printed after ``marker`` (indented lines that run a Python interpreter)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line)
    commands = []
    for line in lines[start:]:
        text = line.split(marker, 1)[1] if marker in line else line
        text = text.strip()
        if text.startswith(("/", ".", "'")) and ".py" in text:
            commands.append(text)
    return commands


def _run_as_printed(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shlex.split(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_replay_when_finished_then_every_printed_inspection_command_runs_as_printed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = _env(tmp_path, DATA_DIR=str(BUNDLED_DAILY))
    elsewhere = tmp_path / "elsewhere"  # not the project directory: printed paths must still work
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, MAIN, "replay", "--start", "2020-09-01", "--end", "2020-12-31", "--quiet", "--db", url],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    commands = _printed_commands(done.stdout, "Inspect it with:")
    assert len(commands) == 8, done.stdout
    bare = {
        k: v for k, v in env.items() if k != "PATH"
    }  # no `python` on PATH: the printed interpreter must be explicit
    for command in commands:
        assert f"--db {url}" in command, command
        result = _run_as_printed(command, elsewhere, bare)
        assert result.returncode == 0, f"{command}\n{result.stderr}"


def test_backtest_when_finished_then_the_printed_inspect_commands_run_as_printed_on_the_same_database(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'bt.db'}"
    env = _env(tmp_path)
    done = subprocess.run([sys.executable, MAIN, "backtest", "--symbols", "AAPL,SPY", "--start", "2020-01-01", "--end", "2020-06-30", "--db", url],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_id = re.search(r"Backtest (\S+) ", done.stdout).group(1)  # type: ignore[union-attr]
    commands = _printed_commands(done.stdout, "inspect:")
    assert len(commands) == 2, done.stdout
    for command in commands:
        result = _run_as_printed(command, tmp_path, {k: v for k, v in env.items() if k != "PATH"})
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        assert run_id in result.stdout


def test_query_trades_listing_when_no_run_given_then_shows_the_latest_run_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = build_ledger(f"sqlite:///{tmp_path / 'ledger.db'}").url
    assert query_trades.main(["trades", "--db", url, "--json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert rows and {r["run_id"] for r in rows} == {RUN_1}
    assert captured.err.strip() == f"run: {RUN_1} (latest; --run all for every run)"
    assert query_trades.main(["decisions", "--db", url]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"run: {RUN_1} (latest; --run all for every run)"
    assert query_trades.main(["trades", "--db", url, "--run", "all", "--json"]) == 0
    assert len({r["run_id"] for r in json.loads(capsys.readouterr().out)}) == 2


def test_query_trades_when_the_run_id_is_unknown_then_one_line_error_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = build_ledger(f"sqlite:///{tmp_path / 'ledger.db'}").url
    assert query_trades.main(["trades", "--db", url, "--run", "nosuch"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("error: --run nosuch: no such run in this database (list them with: ")
    assert line.endswith("scripts/query_trades.py runs)")


# --- 5: one-line errors, the .env typo, reset on ACTIVE ---------------------------------------------------------


def test_replay_when_data_dir_does_not_exist_then_one_line_naming_data_dir_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_DIR", "/nope")
    assert main.main(["replay", "--quiet", "--db", f"sqlite:///{tmp_path / 'r.db'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: DATA_DIR=/nope: files: data directory /nope does not exist"


def test_dashboard_when_the_port_is_out_of_range_then_one_line_and_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    open_database(url).dispose()
    done = subprocess.run([sys.executable, MAIN, "dashboard", "--port", "99999", "--db", url],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --port 99999: must be a TCP port, 1-65535"


def test_start_up_when_env_file_has_a_misspelt_setting_then_warns_naming_it_and_the_close_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".env").write_text(
        "SYMBOL=AAPL\nRISK_PER_TRADE=0.01\nTEST_POSTGRES_URL=postgresql://x@y/z\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    assert main.main(["status", "--at", "2024-03-04T15:00:00", "--db", f"sqlite:///{tmp_path / 's.db'}"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: .env: SYMBOL is not a setting (did you mean SYMBOLS?); it is ignored"]


def test_reset_when_the_daemon_is_active_then_nothing_changes_and_it_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_PROVIDER", "synthetic")
    url = f"sqlite:///{tmp_path / 'active.db'}"
    assert main.main(["run", "--create-db", "--offline", "--once", "--db", url]) == 0
    repo = Repository(open_database(url))
    before = repo.get_state("risk:state")
    assert before is not None and before[0]["state"] == "active"
    capsys.readouterr()
    assert main.main(["reset", "--reason", "just checking", "--db", url]) == 0
    assert (
        capsys.readouterr().out.strip()
        == "trading state is ACTIVE; nothing to reset (the high-water mark is unchanged)"
    )
    assert repo.get_state("risk:state") == before  # the state, its high-water mark and its timestamp untouched
    repo.engine.dispose()
