"""The overnight-gap guard in a backtest on the bundled bars: an entry decided at a session's close is checked at the
price the simulated broker would fill it at (the next session's open). Two opens of a copy of the bundled files are
edited: IBM opens through the stop of the entry decided on 2020-10-28 (refused), BAC opens higher after the entry
decided on 2020-11-09, so that its risk grows past the per-trade limit (resized)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from core.backtest.config import BacktestConfig
from core.backtest.runner import run_backtest
from core.persistence.db import normalise_url
from core.persistence.models import DecisionRow, FillRow
from tests.conftest import BUNDLED_DAILY

IBM_DECIDED, IBM_GAP = "2020-10-28", "2020-10-29"  # the entry's stop is 97.47: the copy opens at 96.00
BAC_DECIDED, BAC_GAP = "2020-11-09", "2020-11-10"  # decided at 27.45, stop 25.47, target 31.42: opens at 28.50


def _edit_open(path: Path, day: str, price: float) -> None:
    frame = pd.read_csv(path)
    row = frame["Date"] == day
    assert row.sum() == 1
    frame.loc[row, "Open"] = price
    frame.loc[row, "Low"] = frame.loc[row, ["Low", "Open"]].min(axis=1)
    frame.loc[row, "High"] = frame.loc[row, ["High", "Open"]].max(axis=1)
    frame.to_csv(path, index=False)


def _gapped_data(tmp_path: Path) -> Path:
    data = tmp_path / "gapped"
    data.mkdir()
    for symbol in ("IBM", "BAC"):
        shutil.copy(BUNDLED_DAILY / f"{symbol}.csv", data / f"{symbol}.csv")
    _edit_open(data / "IBM.csv", IBM_GAP, 96.0)
    _edit_open(data / "BAC.csv", BAC_GAP, 28.5)
    return data


async def _run(settings: Any, data: Path) -> tuple[Any, list[DecisionRow], list[FillRow]]:
    config = BacktestConfig(
        data_dir=data,
        symbols=("BAC", "IBM"),
        start=date(2020, 10, 1),
        end=date(2020, 11, 30),
        shadow=False,
        benchmark=None,
    )
    result = await run_backtest(settings, config)
    with Session(create_engine(normalise_url(settings.database_url))) as session:
        decisions = list(
            session.scalars(
                select(DecisionRow).where(DecisionRow.run_id == result.run_id, DecisionRow.agent == "risk")
            ).all()
        )
        fills = list(session.scalars(select(FillRow).where(FillRow.run_id == result.run_id)).all())
    return result, decisions, fills


def _on(decisions: list[DecisionRow], symbol: str, day: str) -> DecisionRow:
    (row,) = [d for d in decisions if d.symbol == symbol and d.as_of.date().isoformat() == day]
    return row


async def test_backtest_when_the_next_open_gaps_through_the_stop_then_the_entry_is_refused_and_counted(
    settings_factory, tmp_path: Path
) -> None:
    result, decisions, fills = await _run(settings_factory(), _gapped_data(tmp_path))

    refused = _on(decisions, "IBM", IBM_DECIDED)
    assert refused.action == "denied:gap_guard"
    values = refused.inputs["values"]
    assert values["submission_price"] < values["stop"] < values["decided_price"]
    assert "already at or through the stop" in refused.reason
    assert not [f for f in fills if f.symbol == "IBM" and f.filled_at.date().isoformat() == IBM_GAP]
    assert result.denied.get("gap_guard") == 1  # the report's denials by rule


async def test_backtest_when_the_next_open_grows_the_risk_past_the_limit_then_the_entry_is_resized(
    settings_factory, tmp_path: Path
) -> None:
    _, decisions, fills = await _run(settings_factory(), _gapped_data(tmp_path))

    resized = _on(decisions, "BAC", BAC_DECIDED)
    assert resized.action == "approved"
    check = resized.inputs["checks"]["gap_guard"]
    assert check["status"] == "clipped"
    assert (
        check["decided_risk"] <= check["risk_limit"] < check["risk"]
    )  # within the limit at the decision, not at the open
    assert check["risk_limit"] == check["risk_per_trade"] * check["equity"]
    quantity = resized.inputs["quantity"]
    assert quantity == check["resized_quantity"] < check["quantity"]  # the decided quantity
    assert (check["submission_price"] - check["stop"]) * quantity <= check["risk_limit"]
    (fill,) = [f for f in fills if f.symbol == "BAC" and f.filled_at.date().isoformat() == BAC_GAP]
    assert float(fill.quantity) == quantity
    assert float(fill.price) == check["submission_price"]  # the price the guard saw is the price paid
