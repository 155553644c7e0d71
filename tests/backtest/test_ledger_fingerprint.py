"""scripts/ledger_fingerprint.py: two runs of the same backtest fingerprint the same, a changed fill does not."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import date
from pathlib import Path

import pytest

from core.backtest.runner import BacktestConfig, run_backtest
from scripts.ledger_fingerprint import fingerprint, main
from tests.conftest import make_settings


def _run(where: Path, bundled_daily: Path) -> Path:
    where.mkdir(parents=True)
    settings = make_settings(where, database_url=f"sqlite:///{where / 'run.db'}")
    config = BacktestConfig(
        data_dir=bundled_daily, symbols=("IBM", "SPY"), start=date(2015, 1, 1), end=date(2016, 12, 31)
    )
    asyncio.run(run_backtest(settings, config))
    return where / "run.db"


def test_fingerprint_when_the_same_backtest_runs_twice_then_equal_and_a_changed_fill_is_named(
    tmp_path: Path, bundled_daily: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = _run(tmp_path / "a", bundled_daily), _run(tmp_path / "b", bundled_daily)
    a, b = fingerprint(first), fingerprint(second)
    assert a == b
    assert int(a["fills"].split(":")[0]) > 0 and int(a["shadow_matrices"].split(":")[0]) > 0
    saved = tmp_path / "a.json"
    saved.write_text(json.dumps(a))
    assert main([f"sqlite:///{second}", "--compare", str(saved)]) == 0
    with sqlite3.connect(second) as con:
        con.execute("UPDATE fills SET price = price + 0.01 WHERE id = (SELECT MIN(id) FROM fills)")
    capsys.readouterr()
    assert main([str(second), "--compare", str(saved)]) == 1
    assert "differs: fills" in capsys.readouterr().err
