"""A tiny, independent reference backtester to cross-check the main pipeline.

Deliberately naive: plain Python loops over bars, one symbol at a time, no shared code with the pipeline apart from
the crossover definition (restated here) and the bar layout. If this file and the pipeline disagree, one of them is
wrong; this one is short enough to check by eye.

Rules (``reference_ma_crossover``)
---------------------------------
* ``fast_sma = close.rolling(fast).mean()``, ``slow_sma = close.rolling(slow).mean()`` (plain pandas; NaN until
  the window is full).
* Crossover exactly as ``strategies.trend.TrendFollowing``: a **BUY signal** on bar ``t`` when
  ``fast[t] > slow[t]`` and ``fast[t-1] <= slow[t-1]``; a **SELL signal** when ``fast[t] < slow[t]`` and
  ``fast[t-1] >= slow[t-1]``. Any comparison with NaN is false, so the first possible signal needs both SMAs on
  bars ``t-1`` and ``t``.
* Long-only, fixed size: on a BUY signal while flat, buy ``qty`` shares; on a SELL signal while long, sell them
  all. Orders fill at the **open of the symbol's next bar** (``fill="next-open"``, the only mode); a signal on the
  symbol's last bar never fills. No commission, no slippage.
* Fills happen at the start of a bar, before that bar's signal is read, so a position bought at ``open[t+1]`` can
  be sold on a SELL signal at ``t+1`` (filled at ``open[t+2]``).
* **Cash is not a constraint**: every order fills. ``cash`` is the starting balance; ``min_cash`` reports the
  lowest balance after each day's fills (all symbols together), so a caller comparing with a broker that rejects
  orders for lack of cash can check ``min_cash >= 0``.
* ``final_equity = cash + sum(sell proceeds) - sum(buy costs) + sum(open qty * last close)``, each open position
  marked at its own symbol's last close.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

import pandas as pd

FillMode = Literal["next-open"]
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "UTC+00:00", "Z", "Etc/Zulu", "Zulu", "Universal", "Etc/Universal"})


class ReferenceTrade(NamedTuple):
    """One round trip (a tuple). An open position at the end has ``exit_date`` and ``exit_price`` ``None``."""

    symbol: str
    entry_date: datetime
    entry_price: float
    exit_date: datetime | None
    exit_price: float | None
    qty: int


@dataclass(frozen=True, slots=True)
class ReferenceResult:
    """Final equity (cash plus open positions at their last close), trades in (symbol, entry) order, lowest cash."""

    final_equity: float
    trades: list[ReferenceTrade]
    cash: float
    min_cash: float

    @property
    def closed_trades(self) -> list[ReferenceTrade]:
        return [t for t in self.trades if t.exit_date is not None]


def _check_bars(symbol: str, frame: pd.DataFrame) -> tuple[pd.DatetimeIndex, list[float], list[float]]:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{symbol}: bars must be a DataFrame, got {type(frame).__name__}")
    missing = [c for c in ("open", "close") if c not in frame.columns]
    if missing:
        raise ValueError(f"{symbol}: missing column(s) {', '.join(missing)} (expected the provider layout)")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None or str(index.tz) not in _UTC_NAMES:
        raise ValueError(f"{symbol}: bars need a timezone-aware UTC DatetimeIndex")
    if not (index.is_monotonic_increasing and index.is_unique):
        raise ValueError(f"{symbol}: bar timestamps must be strictly increasing")
    opens = [float(v) for v in frame["open"].to_numpy(dtype=float)]
    closes = [float(v) for v in frame["close"].to_numpy(dtype=float)]
    for name, values in (("open", opens), ("close", closes)):
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"{symbol}: {name} prices must be finite and positive")
    return index, opens, closes


def reference_ma_crossover(
    bars_by_symbol: Mapping[str, pd.DataFrame],
    fast: int,
    slow: int,
    qty: int,
    cash: float,
    fill: FillMode = "next-open",
) -> ReferenceResult:
    """Long-only SMA(fast)/SMA(slow) crossover, ``qty`` shares per entry, next-open fills, no costs (see module)."""
    if fill != "next-open":
        raise ValueError(f"fill must be 'next-open', got {fill!r}")
    if not (isinstance(fast, int) and isinstance(slow, int) and 1 <= fast < slow):
        raise ValueError(f"need integers 1 <= fast < slow, got fast={fast!r}, slow={slow!r}")
    if not (isinstance(qty, int) and qty > 0):
        raise ValueError(f"qty must be a positive integer, got {qty!r}")
    if not math.isfinite(cash):
        raise ValueError(f"cash must be finite, got {cash!r}")

    trades: list[ReferenceTrade] = []
    cash_flows: dict[pd.Timestamp, float] = {}
    open_value = 0.0
    for symbol in sorted(bars_by_symbol):
        index, opens, closes = _check_bars(symbol, bars_by_symbol[symbol])
        close_series = pd.Series(closes, dtype=float)
        fast_sma = close_series.rolling(fast).mean().tolist()
        slow_sma = close_series.rolling(slow).mean().tolist()

        entry: tuple[datetime, float] | None = None  # (date, price) of the open position; None when flat
        pending: str | None = None  # "buy" or "sell", to fill at the next bar's open
        for t in range(len(closes)):
            # 1. Fill the order placed on the previous bar at this bar's open.
            day = index[t]
            if pending == "buy":
                entry = (day.to_pydatetime(), opens[t])
                cash_flows[day] = cash_flows.get(day, 0.0) - qty * opens[t]
            elif pending == "sell" and entry is not None:
                trades.append(ReferenceTrade(symbol, entry[0], entry[1], day.to_pydatetime(), opens[t], qty))
                cash_flows[day] = cash_flows.get(day, 0.0) + qty * opens[t]
                entry = None
            pending = None
            # 2. Read this bar's signal (comparisons with NaN are False).
            if t == 0:
                continue
            crossed_up = fast_sma[t] > slow_sma[t] and fast_sma[t - 1] <= slow_sma[t - 1]
            crossed_down = fast_sma[t] < slow_sma[t] and fast_sma[t - 1] >= slow_sma[t - 1]
            if crossed_up and entry is None:
                pending = "buy"
            elif crossed_down and entry is not None:
                pending = "sell"
        if entry is not None:
            trades.append(ReferenceTrade(symbol, entry[0], entry[1], None, None, qty))
            open_value += qty * closes[-1]

    balance = float(cash)
    min_cash = balance
    for day in sorted(cash_flows):
        balance += cash_flows[day]
        min_cash = min(min_cash, balance)
    return ReferenceResult(final_equity=balance + open_value, trades=trades, cash=balance, min_cash=min_cash)
