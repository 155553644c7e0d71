"""Performance of one run (metrics from :mod:`core.analytics.metrics` over its equity snapshots and closed round trips) and
the calibration of the entry confidences (:mod:`core.analytics.calibration`)."""

from __future__ import annotations

from datetime import UTC, date
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.analytics.calibration import CalibrationReport, calibration_report
from core.analytics.metrics import TRADING_DAYS_PER_YEAR, compute_metrics, metrics_by
from core.persistence.models import EquitySnapshotRow
from core.analytics.reporting.filters import _norm_symbol, _one_run, _window
from core.analytics.reporting.trips import _closed_in_window, rebuild_round_trips, round_trips


def performance(
    session: Session,
    *,
    run_id: str | None = None,
    symbol: str | None = None,
    start: date | None = None,
    end: date | None = None,
    periods_per_year: float = TRADING_DAYS_PER_YEAR,
    risk_free: float = 0.0,
    var_level: float = 0.95,
) -> dict[str, Any]:
    """Metrics of one run (default: the latest): :func:`core.analytics.metrics.compute_metrics` over the run's equity
    snapshots in the window and its closed round trips, plus trade metrics by strategy and by symbol.

    Exposure is the share of snapshots with at least one open position. With ``symbol``, only the trades are
    filtered: the equity curve (and with it return, Sharpe, drawdown, exposure) stays the account's.
    Snapshots sharing a timestamp keep the last one recorded.
    """
    run = _one_run(session, run_id)
    stmt = _window(
        select(EquitySnapshotRow.at, EquitySnapshotRow.equity, EquitySnapshotRow.positions).where(
            EquitySnapshotRow.run_id == run.id
        ),
        EquitySnapshotRow.at,
        start,
        end,
    ).order_by(EquitySnapshotRow.at, EquitySnapshotRow.id)
    rows = session.execute(stmt).all()
    index = pd.DatetimeIndex([at for at, _, _ in rows], tz=UTC) if rows else pd.DatetimeIndex([], tz=UTC)
    equity = pd.Series([float(e) for _, e, _ in rows], index=index, dtype=float)
    exposure = pd.Series([1 if p > 0 else 0 for _, _, p in rows], index=index, dtype=float)
    keep = ~index.duplicated(keep="last")
    equity, exposure = equity[keep], exposure[keep]

    book = rebuild_round_trips(session, run_id=run.id, symbol=symbol)
    trips = _closed_in_window(book, start, end)
    trades = [t.to_closed_trade() for t in trips]
    metrics = compute_metrics(
        equity, trades, periods_per_year=periods_per_year, risk_free=risk_free, var_level=var_level, exposure=exposure
    )
    return {
        "run_id": run.id,
        "kind": run.kind,
        "symbol": _norm_symbol(symbol),
        "window": {"start": start, "end": end},
        "initial_cash": run.initial_cash,
        "first_equity": rows[0][1] if rows else None,
        "last_equity": rows[-1][1] if rows else None,
        "metrics": metrics.as_dict(),
        "by_strategy": {k: v.as_dict() for k, v in metrics_by(trades, "strategy").items()},
        "by_symbol": {k: v.as_dict() for k, v in metrics_by(trades, "symbol").items()},
        "open_trips": [t.summary() for t in book.open],
        "unmatched_sells": [
            {"symbol": u.symbol, "fill_id": u.fill_id, "quantity": u.quantity, "filled_at": u.filled_at}
            for u in book.unmatched
        ],
    }


def calibration(
    session: Session,
    *,
    run_id: str | None = None,
    symbol: str | None = None,
    start: date | None = None,
    end: date | None = None,
    bins: int = 5,
) -> CalibrationReport:
    """Brier score and reliability table of the entry confidences of the closed round trips."""
    return calibration_report(round_trips(session, run_id=run_id, symbol=symbol, start=start, end=end), bins=bins)
