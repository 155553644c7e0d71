"""The one error hierarchy (core/errors.py): every exception class the project defines descends from ``TraderError``
under one of its branches, maps to the exit code the README documents, and the retryable failures of the broker, the
data and the LLM adapters share one ``TemporaryError``."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import main
from core.errors import (
    EXIT_CODES,
    ConfigurationError,
    ExternalError,
    LedgerWriteFailed,
    LockConflict,
    OperationalError,
    StorageUnavailable,
    TemporaryError,
    TraderError,
    exit_code_for,
)
from tests.conftest import REPO_ROOT

PACKAGES = ("agents", "config", "core", "strategies", "utils")
SCRIPTS = ("main.py", "scripts/query_trades.py")

# The documented code of every project exception (README "Exit codes"): 2 configuration, 3 database, 4 lock,
# 5 ledger, 1 everything else. A new exception class must be added here, under the branch it belongs to.
# internal control flow, never shown to a user: no branch
CONTROL_FLOW = {"core.risk.rules._Refused", "core.research.study.SurplusTrial"}

EXPECTED_CODES = {
    # configuration: a setting, an input or a command line that cannot be used
    "config.settings.SettingsError": 2,
    "core.runtime.app.MissingKeys": 2,
    "core.backtest.config.BacktestError": 2,
    "core.brokers.base.BrokerAuthError": 2,
    "core.brokers.base.BrokerModeMismatch": 2,
    "core.kernel.calendar.CalendarError": 2,
    "core.llm.telemetry.PriceTableError": 2,
    "core.persistence.db.InvalidDatabaseUrl": 2,
    "core.risk.sectors.SectorMapError": 2,
    "scripts.query_trades.UnknownRun": 2,
    "strategies.base.InvalidStrategyParams": 2,
    # operational
    "core.persistence.db.DatabaseUnavailable": 3,
    "core.persistence.db.DatabaseMissing": 3,
    "core.persistence.db.DaemonAlreadyRunning": 4,
    "core.persistence.db.DaemonLockLost": 4,
    "core.runtime.orchestrator.PersistenceFailure": 5,
    "core.kernel.bus.BusClosed": 1,
    "core.kernel.domain.IllegalOrderTransition": 1,
    "core.risk.rules._Refused": 1,
    "core.research.study.SurplusTrial": 1,
    # external services
    "core.brokers.base.BrokerError": 1,
    "core.brokers.base.TemporaryBrokerError": 1,
    "core.data.base.DataError": 1,
    "core.data.cache.CacheError": 1,
    "core.data.files.BarFormatError": 1,
    "core.llm.providers.AttemptFailure": 1,
    "core.llm.providers.ProviderCallError": 1,
    "core.llm.providers.TemporaryAttemptFailure": 1,
    "core.llm.providers.TemporaryProviderCallError": 1,
    "core.llm.validation.UnusableAnswer": 1,
    "utils.deadline.DeadlineReached": 1,
    "utils.http.DeadlineExceeded": 1,
    "utils.http.InvalidResponseBody": 1,
    "utils.rate_limiter.LimiterWaitTooLong": 1,
}

HIERARCHY = (TraderError, ConfigurationError, OperationalError, StorageUnavailable, LockConflict, LedgerWriteFailed,
             ExternalError, TemporaryError)  # fmt: skip


def _modules_defining_classes() -> list[str]:
    """Every project module with a top-level class, found from the source (importing every module would also run
    the dashboard's Streamlit script)."""
    files = [path for package in PACKAGES for path in sorted((REPO_ROOT / package).rglob("*.py"))]
    files += [REPO_ROOT / script for script in SCRIPTS]
    names = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, ast.ClassDef) for node in tree.body):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _project_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _modules_defining_classes():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return {name: cls for name, cls in found.items() if cls not in HIERARCHY}


def test_walk_project_modules_when_collecting_exceptions_then_each_descends_from_trader_error_with_its_documented_code():
    found = _project_exceptions()
    assert set(found) == set(EXPECTED_CODES), "an exception class was added or removed: list it in EXPECTED_CODES"
    for name, cls in sorted(found.items()):
        assert issubclass(cls, TraderError), f"{name} is outside the TraderError hierarchy"
        branches = [
            branch for branch in (ConfigurationError, OperationalError, ExternalError) if issubclass(cls, branch)
        ]
        assert branches or name in CONTROL_FLOW, f"{name} is under no branch"
        assert exit_code_for(cls) == EXPECTED_CODES[name], name


def test_reparent_exceptions_when_callers_catch_builtin_bases_then_those_bases_are_kept():
    from config.settings import SettingsError
    from core.runtime.orchestrator import PersistenceFailure
    from core.persistence.db import DaemonAlreadyRunning, DatabaseUnavailable, InvalidDatabaseUrl

    assert issubclass(SettingsError, ValueError) and issubclass(InvalidDatabaseUrl, ValueError)
    assert issubclass(DatabaseUnavailable, RuntimeError) and issubclass(DaemonAlreadyRunning, RuntimeError)
    assert issubclass(PersistenceFailure, RuntimeError)


def test_retryable_failures_when_raised_by_broker_data_or_llm_paths_then_share_one_temporary_error():
    import utils.deadline
    from core.brokers.base import BrokerError, TemporaryBrokerError
    from utils.http import DeadlineExceeded
    from utils.rate_limiter import LimiterWaitTooLong

    assert utils.deadline.TemporaryError is TemporaryError
    for cls in (TemporaryBrokerError, utils.deadline.DeadlineReached, DeadlineExceeded, LimiterWaitTooLong):
        assert issubclass(cls, TemporaryError) and issubclass(cls, ExternalError), cls
    assert not issubclass(BrokerError, TemporaryError)  # a rejected order is not retried
    assert exit_code_for(TemporaryBrokerError("timeout")) == 1


async def test_llm_retries_when_attempts_fail_temporarily_then_retried_and_the_final_error_is_temporary():
    from core.llm.providers import (
        AttemptFailure,
        ProviderCallError,
        RetryPolicy,
        TemporaryAttemptFailure,
        run_with_retries,
    )
    from core.llm.telemetry import CallOutcome

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def unavailable() -> tuple[object, int, int]:
        raise TemporaryAttemptFailure(CallOutcome.HTTP_ERROR, "HTTP 503")

    with pytest.raises(ProviderCallError) as raised:
        await run_with_retries(
            unavailable, policy=RetryPolicy(max_retries=2, base_delay_s=0.0, max_delay_s=0.0), sleep=sleep
        )
    assert isinstance(raised.value, TemporaryError) and raised.value.retries == 2 and len(slept) == 2

    async def refused() -> tuple[object, int, int]:
        raise AttemptFailure(CallOutcome.HTTP_ERROR, "HTTP 400")

    slept.clear()
    with pytest.raises(ProviderCallError) as raised:
        await run_with_retries(
            refused, policy=RetryPolicy(max_retries=2, base_delay_s=0.0, max_delay_s=0.0), sleep=sleep
        )
    assert not isinstance(raised.value, TemporaryError) and raised.value.retries == 0 and slept == []


def test_exit_code_for_when_class_is_outside_the_hierarchy_then_one():
    assert exit_code_for(KeyError("x")) == 1
    assert exit_code_for(ValueError) == 1


def _readme_exit_codes() -> dict[int, str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^Exit codes: (.+?)(?:\n\n|\. Start-up)", text, re.S | re.M)
    assert match, "README has no 'Exit codes:' paragraph"
    paragraph = " ".join(match.group(1).split())
    parts = re.split(r"(?:^|, )(\d) (?=[a-z])", paragraph)
    return {int(code): meaning for code, meaning in zip(parts[1::2], parts[2::2], strict=False)}


def test_exit_code_table_when_compared_with_readme_then_each_code_means_what_readme_says():
    documented = _readme_exit_codes()
    assert set(documented) == {0} | set(EXIT_CODES.values())
    meanings = {
        TraderError: "unexpected error",
        ExternalError: "the broker unreachable",
        ConfigurationError: "invalid configuration",
        StorageUnavailable: "database unavailable",
        LockConflict: "holds the database's lock",
        LedgerWriteFailed: "could not be recorded",
    }
    for cls, words in meanings.items():
        assert words in documented[EXIT_CODES[cls]], (cls.__name__, documented[EXIT_CODES[cls]])
    assert (main.EXIT_CONFIG, main.EXIT_DB, main.EXIT_LOCKED, main.EXIT_PERSIST) == (2, 3, 4, 5)


@pytest.mark.parametrize("argv", [["replay", "--start", "1950-01-01", "--end", "1950-03-01", "--quiet"]])
def test_main_when_a_configuration_error_reaches_the_top_then_one_line_and_its_class_code(
    argv: list[str], tmp_path: Path
):
    """A :class:`ConfigurationError` no command handles itself (here the calendar refusing a date it does not cover)
    ends the program with the configuration code and one line, not a traceback and exit 1."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}", "LOG_DIR": str(tmp_path / "logs"),
           "DATA_PROVIDER": "files"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "main.py", *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip().splitlines()[-1]
        == "error: XNYS calendar covers 1990-01-01..2040-12-31; 1950-01-01 is outside it"
    )
