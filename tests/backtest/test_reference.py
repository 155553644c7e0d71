"""core.backtest.reference on hand-built bars (every SMA and fill worked out in the comments)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from core.backtest.reference import ReferenceTrade, reference_ma_crossover
from core.data.files import read_bars_file
from strategies import indicators as ind
from tests.conftest import BUNDLED_DAILY

# Twelve daily bars, 2024-01-01 .. 2024-01-12 (positions 0..11).
CLOSES = [10, 10, 10, 10, 12, 14, 13, 11, 9, 8, 11, 12]
OPENS = [10, 10, 10, 10, 11, 13, 14, 12, 10, 8.5, 9, 11.5]
# SMA(2) from t=1:  10, 10, 10, 11, 13, 13.5, 12, 10, 8.5, 9.5, 11.5
# SMA(3) from t=2:      10, 10, 10.667, 12, 13, 12.667, 11, 9.333, 9.333, 10.333
# t=3: fast 10 == slow 10 (not above).
# t=4: fast 11 > slow 10.667 and at t=3 fast 10 <= slow 10     -> BUY signal (equality before counts), fill open[5] = 13
# t=5, 6: fast stays above (13 > 12, 13.5 > 13).
# t=7: fast 12 < slow 12.667 and at t=6 fast 13.5 >= slow 13   -> SELL signal, fill open[8] = 10
# t=8, 9: fast stays below (10 < 11, 8.5 < 9.333).
# t=10: fast 9.5 > slow 9.333 and at t=9 fast 8.5 <= 9.333     -> BUY signal, fill open[11] = 11.5
# t=11: fast 11.5 > slow 10.333, no new signal; the position is marked at close[11] = 12.
# With qty 10 and cash 1000: cash 1000 - 130 (6 Jan) + 100 (9 Jan) - 115 (12 Jan) = 855,
# open position 10 * 12 = 120, final equity 975 (= 1000 - 30 on the closed trade + 5 on the open one).


def _bars(opens: list[float], closes: list[float], start: str = "2024-01-01") -> pd.DataFrame:
    index = pd.date_range(start, periods=len(closes), freq="D", tz="UTC", name="timestamp")
    return pd.DataFrame({"open": opens, "high": np.maximum(opens, closes), "low": np.minimum(opens, closes),
                         "close": closes, "volume": 1000.0}, index=index, dtype=float)  # fmt: skip


def _day(d: int) -> datetime:
    return datetime(2024, 1, d, tzinfo=UTC)


def test_reference_when_hand_built_crossovers_then_trades_and_final_equity_by_hand() -> None:
    result = reference_ma_crossover({"AAA": _bars(OPENS, CLOSES)}, fast=2, slow=3, qty=10, cash=1000.0)

    # Positions 5, 8 and 11 are 6, 9 and 12 January.
    assert result.trades == [
        ReferenceTrade("AAA", _day(6), 13.0, _day(9), 10.0, 10),
        ReferenceTrade("AAA", _day(12), 11.5, None, None, 10),
    ]
    assert result.closed_trades == result.trades[:1]
    assert result.cash == pytest.approx(855.0)
    assert result.final_equity == pytest.approx(975.0)
    assert result.min_cash == pytest.approx(855.0)


def test_reference_when_signal_on_the_last_bar_then_it_never_fills() -> None:
    # Drop the last bar: the BUY signal of t=10 is now on the last bar and has no next open to fill at.
    result = reference_ma_crossover({"AAA": _bars(OPENS[:11], CLOSES[:11])}, fast=2, slow=3, qty=10, cash=1000.0)

    assert result.trades == [ReferenceTrade("AAA", _day(6), 13.0, _day(9), 10.0, 10)]
    assert result.final_equity == pytest.approx(970.0)


def test_reference_when_two_symbols_then_trades_sorted_by_symbol_and_cash_shared() -> None:
    bars = _bars(OPENS, CLOSES)

    result = reference_ma_crossover({"BBB": bars, "AAA": bars}, fast=2, slow=3, qty=10, cash=1000.0)

    assert [t.symbol for t in result.trades] == ["AAA", "AAA", "BBB", "BBB"]
    # Twice the single-symbol flows: 1000 - 260 (6 Jan) + 200 (9 Jan) - 230 (12 Jan) = 710; equity 710 + 240 = 950.
    assert result.min_cash == pytest.approx(710.0)
    assert result.final_equity == pytest.approx(950.0)


def test_reference_when_cash_too_small_then_still_fills_and_reports_negative_min_cash() -> None:
    result = reference_ma_crossover({"AAA": _bars(OPENS, CLOSES)}, fast=2, slow=3, qty=10, cash=100.0)

    assert result.min_cash == pytest.approx(-45.0)  # 100 - 130 (6 Jan) = -30, + 100 (9 Jan) = 70, - 115 (12 Jan)
    assert result.final_equity == pytest.approx(75.0)


def test_reference_when_no_crossover_then_no_trades_and_equity_is_cash() -> None:
    rising = [float(10 + t) for t in range(12)]  # SMA(2) > SMA(3) from the first bar both exist: never a cross

    result = reference_ma_crossover({"AAA": _bars(rising, rising)}, fast=2, slow=3, qty=5, cash=500.0)

    assert result.trades == []
    assert result.final_equity == 500.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fast": 3, "slow": 3}, "fast < slow"),
        ({"fast": 0, "slow": 3}, "fast < slow"),
        ({"qty": 0}, "qty"),
        ({"fill": "close"}, "fill"),
        ({"cash": float("nan")}, "cash"),
    ],
)
def test_reference_when_arguments_invalid_then_raises(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"fast": 2, "slow": 3, "qty": 10, "cash": 1000.0, **kwargs}

    with pytest.raises(ValueError, match=message):
        reference_ma_crossover({"AAA": _bars(OPENS, CLOSES)}, **args)  # type: ignore[arg-type]


def test_reference_when_bars_malformed_then_raises_naming_the_symbol() -> None:
    naive = _bars(OPENS, CLOSES).tz_localize(None)
    no_open = _bars(OPENS, CLOSES).drop(columns="open")
    zero_price = _bars([0.0] + OPENS[1:], CLOSES)

    for frame in (naive, no_open, zero_price):
        with pytest.raises(ValueError, match="AAA"):
            reference_ma_crossover({"AAA": frame}, fast=2, slow=3, qty=10, cash=1000.0)


def test_reference_uses_the_crossover_definition_of_the_trend_following_strategy() -> None:
    # On real bars, replay the signals of strategies.indicators (the kernels TrendFollowing uses): the reference
    # must enter at the open after every crossed_above bar while flat and exit after every crossed_below bar.
    bars = read_bars_file(BUNDLED_DAILY / "SPY.csv").loc["2005":"2012"]
    close = bars["close"].to_numpy()
    spread = ind.sma(close, 20) - ind.sma(close, 50)
    buy, sell = ind.crossed_above(spread, 0.0), ind.crossed_below(spread, 0.0)
    expected_entries, expected_exits, long = [], [], False
    for t in range(len(close) - 1):
        if buy[t] and not long:
            expected_entries.append(bars.index[t + 1].to_pydatetime())
            long = True
        elif sell[t] and long:
            expected_exits.append(bars.index[t + 1].to_pydatetime())
            long = False

    result = reference_ma_crossover({"SPY": bars}, fast=20, slow=50, qty=1, cash=10_000.0)

    assert len(expected_entries) > 10
    assert [t.entry_date for t in result.trades] == expected_entries
    assert [t.exit_date for t in result.closed_trades] == expected_exits
