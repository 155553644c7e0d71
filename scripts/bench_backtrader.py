#!/usr/bin/env python3
"""Cross-check and benchmark: the same SMA crossover in backtrader and in ``core.backtest.reference``.

Rules (both engines): long-only, ``qty`` shares per entry, BUY on the bar where SMA(fast) crosses above SMA(slow)
(``fast[t] > slow[t]`` and ``fast[t-1] <= slow[t-1]``) while flat, SELL everything on the cross below while long,
market orders filled at the symbol's next bar open (backtrader's default execution; cheat-on-close off), no
commission, no slippage; open positions marked at the last close.

Data sets: the 6 bundled symbols in ``data/daily`` and, when ``../shared/data/universe`` exists, the first
``--universe-symbols`` stocks (alphabetically) over the last ``--years`` years of that data (read in place; those
files may be used for tests and benchmarks only, never copied into the repository).

Each engine is timed from loading the CSV files to its final result; the script prints bars, seconds, bars/s,
final equity, trade count and whether entries, exits and final equity (to the cent) agree.

backtrader is a **dev-only** dependency: ``.venv/bin/pip install backtrader==1.9.78.123``.
Run ``.venv/bin/python scripts/bench_backtrader.py [--fast 10] [--slow 30] [--qty 10] [--cash 1000000]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import backtrader as bt
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.backtest.reference import ReferenceTrade, reference_ma_crossover  # noqa: E402
from core.data.files import normalise_bars  # noqa: E402
from core.kernel.domain import datetime_index  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_DAILY = REPO_ROOT / "data" / "daily"
UNIVERSE_STOCKS = REPO_ROOT.parent / "shared" / "data" / "universe" / "stocks"


# ---------------------------------------------------------------------------------------------------- loading


def load_bars(paths: Mapping[str, Path], start: date | None = None, end: date | None = None) -> dict[str, pd.DataFrame]:
    """Read and normalise each file (provider layout: UTC index, lower-case columns), cut to ``[start, end]``."""
    frames: dict[str, pd.DataFrame] = {}
    for symbol, path in paths.items():
        frame = normalise_bars(pd.read_csv(path), str(path))
        if start is not None:
            frame = frame.loc[frame.index >= pd.Timestamp(start, tz=UTC)]
        if end is not None:
            frame = frame.loc[frame.index <= pd.Timestamp(end, tz=UTC)]
        if len(frame):
            frames[symbol] = frame
    return frames


def bundled_paths(directory: Path = BUNDLED_DAILY, symbols: Sequence[str] | None = None) -> dict[str, Path]:
    paths = {p.stem.upper(): p for p in sorted(directory.glob("*.csv"))}
    return {s: paths[s] for s in symbols} if symbols is not None else paths


def universe_paths(directory: Path = UNIVERSE_STOCKS, count: int = 20) -> dict[str, Path]:
    files = sorted(directory.glob("*.us.txt"))[:count]
    return {p.name.split(".")[0].upper(): p for p in files}


# ------------------------------------------------------------------------------------------------- backtrader


@dataclass(frozen=True, slots=True)
class BacktraderResult:
    final_equity: float
    trades: list[ReferenceTrade]
    rejected_orders: int


class _MACrossover(bt.Strategy):
    """The reference rules written as a backtrader strategy (backtrader's own SMA; the crossover spelled out)."""

    params = (("fast", 10), ("slow", 30), ("qty", 10))

    def __init__(self) -> None:
        self.fast_sma = {d: bt.indicators.SimpleMovingAverage(d.close, period=self.p.fast) for d in self.datas}
        self.slow_sma = {d: bt.indicators.SimpleMovingAverage(d.close, period=self.p.slow) for d in self.datas}
        self.bars_seen = {d: 0 for d in self.datas}
        self.fills: list[tuple[str, datetime, float, float]] = []
        self.rejected = 0

    def notify_order(self, order: bt.Order) -> None:
        if order.status == order.Completed:
            filled_at = bt.num2date(order.executed.dt)
            day = datetime(filled_at.year, filled_at.month, filled_at.day, tzinfo=UTC)
            self.fills.append((order.data._name, day, float(order.executed.price), float(order.executed.size)))
        elif order.status in (order.Canceled, order.Margin, order.Rejected):
            self.rejected += 1

    def prenext(self) -> None:
        # Datas start on different dates: trade each one as soon as its own SMAs exist, not when all of them do.
        self.next()

    def next(self) -> None:
        for d in self.datas:
            bars = len(d)
            if bars == self.bars_seen[d]:
                continue  # this symbol has no bar at the current time: nothing new to read
            self.bars_seen[d] = bars
            if bars < 2:
                continue
            fast, slow = self.fast_sma[d], self.slow_sma[d]
            crossed_up = fast[0] > slow[0] and fast[-1] <= slow[-1]  # comparisons with NaN are False
            crossed_down = fast[0] < slow[0] and fast[-1] >= slow[-1]
            size = self.getposition(d).size
            if crossed_up and size == 0:
                self.buy(data=d, size=self.p.qty)
            elif crossed_down and size > 0:
                self.sell(data=d, size=size)


def _pair_fills(fills: Sequence[tuple[str, datetime, float, float]], qty: int) -> list[ReferenceTrade]:
    trades: list[ReferenceTrade] = []
    open_entry: dict[str, tuple[datetime, float]] = {}
    for symbol, day, price, size in fills:
        if size > 0:
            open_entry[symbol] = (day, price)
        else:
            entry_day, entry_price = open_entry.pop(symbol)
            trades.append(ReferenceTrade(symbol, entry_day, entry_price, day, price, qty))
    trades.extend(ReferenceTrade(s, d, p, None, None, qty) for s, (d, p) in open_entry.items())
    return sorted(trades, key=lambda t: (t.symbol, t.entry_date))


def run_backtrader(
    bars_by_symbol: Mapping[str, pd.DataFrame], fast: int, slow: int, qty: int, cash: float
) -> BacktraderResult:
    """Run :class:`_MACrossover` over the frames (provider layout) with backtrader's default broker."""
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(cash)
    cerebro.broker.set_coc(False)  # cheat-on-close off: market orders fill at the next bar's open (the default)
    for symbol in sorted(bars_by_symbol):
        frame = bars_by_symbol[symbol].copy()
        frame.index = datetime_index(frame).tz_convert(UTC).tz_localize(None)  # backtrader expects naive datetimes
        feed = bt.feeds.PandasData(
            dataname=frame, open="open", high="high", low="low", close="close", volume="volume", openinterest=None
        )
        cerebro.adddata(feed, name=symbol)
    cerebro.addstrategy(_MACrossover, fast=fast, slow=slow, qty=qty)
    (strategy,) = cerebro.run()
    return BacktraderResult(
        final_equity=float(cerebro.broker.getvalue()),
        trades=_pair_fills(strategy.fills, qty),
        rejected_orders=strategy.rejected,
    )


# ------------------------------------------------------------------------------------------------------ bench


def same_trades(a: Sequence[ReferenceTrade], b: Sequence[ReferenceTrade], rel_tol: float = 1e-12) -> bool:
    """Same symbols, dates and quantities; prices equal up to ``rel_tol``.

    backtrader reports a fill's price as its position-averaging arithmetic ``price * size / size``, which can differ
    from the bar's open in the last bit (``0.8315240000000002`` for an open of ``0.831524``).
    """

    def close(x: float | None, y: float | None) -> bool:
        return x == y if x is None or y is None else math.isclose(x, y, rel_tol=rel_tol, abs_tol=0.0)

    return len(a) == len(b) and all(
        (s.symbol, s.entry_date, s.exit_date, s.qty) == (t.symbol, t.entry_date, t.exit_date, t.qty)
        and close(s.entry_price, t.entry_price)
        and close(s.exit_price, t.exit_price)
        for s, t in zip(a, b, strict=True)
    )


def _timed(
    label: str, bars: int, run: Callable[[], tuple[float, list[ReferenceTrade]]]
) -> tuple[float, list[ReferenceTrade]]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    equity, trades = run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    closed = sum(1 for t in trades if t.exit_date is not None)
    print(
        f"  {label:<10} {bars:>8,} bars in {wall:7.3f}s wall ({cpu:.3f}s CPU) -> {bars / wall:>9,.0f} bars/s wall, "
        f"{bars / cpu:>9,.0f} bars/s CPU; final equity {equity:,.2f}; {len(trades)} entries ({closed} closed)"
    )
    return equity, trades


def compare(
    name: str,
    paths: Mapping[str, Path],
    start: date | None,
    end: date | None,
    fast: int,
    slow: int,
    qty: int,
    cash: float,
) -> bool:
    bars = sum(len(f) for f in load_bars(paths, start, end).values())
    print(f"{name}: {len(paths)} symbols, {start or 'first bar'} .. {end or 'last bar'}, SMA {fast}/{slow}, qty {qty}")
    rejected: list[int] = []

    def backtrader_run() -> tuple[float, list[ReferenceTrade]]:
        result = run_backtrader(load_bars(paths, start, end), fast, slow, qty, cash)
        rejected.append(result.rejected_orders)
        return result.final_equity, result.trades

    min_cash: list[float] = []

    def reference_run() -> tuple[float, list[ReferenceTrade]]:
        result = reference_ma_crossover(load_bars(paths, start, end), fast, slow, qty, cash)
        min_cash.append(result.min_cash)
        return result.final_equity, result.trades

    bt_equity, bt_trades = _timed("backtrader", bars, backtrader_run)
    ref_equity, ref_trades = _timed("reference", bars, reference_run)
    entries_agree = same_trades(
        [t._replace(exit_date=None, exit_price=None) for t in bt_trades],
        [t._replace(exit_date=None, exit_price=None) for t in ref_trades],
    )
    trades_agree = same_trades(bt_trades, ref_trades)
    same_equity = round(bt_equity, 2) == round(ref_equity, 2)
    print(
        f"  agreement: entries {'yes' if entries_agree else 'NO'}, entries+exits {'yes' if trades_agree else 'NO'}, "
        f"final equity to the cent {'yes' if same_equity else 'NO'} (difference {bt_equity - ref_equity:+.6f}); "
        f"backtrader rejected orders: {rejected[0]}; reference lowest cash {min_cash[0]:,.2f}"
    )
    if not trades_agree:
        for a, b in zip(bt_trades, ref_trades, strict=False):
            if not same_trades([a], [b]):
                print(f"  first difference: backtrader {a} vs reference {b}")
                break
    return entries_agree and trades_agree and same_equity and rejected[0] == 0 and min_cash[0] >= 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", type=int, default=10)
    parser.add_argument("--slow", type=int, default=30)
    parser.add_argument("--qty", type=int, default=10)
    parser.add_argument("--cash", type=float, default=1_000_000.0)
    parser.add_argument("--universe-symbols", type=int, default=20)
    parser.add_argument("--years", type=int, default=10)
    args = parser.parse_args()
    if not math.isfinite(args.cash) or args.cash <= 0:
        parser.error("--cash must be positive")
    print(f"backtrader {bt.__version__}, pandas {pd.__version__}, Python {sys.version.split()[0]}")
    ok = compare("bundled data/daily", bundled_paths(), None, None, args.fast, args.slow, args.qty, args.cash)
    if UNIVERSE_STOCKS.is_dir():
        paths = universe_paths(count=args.universe_symbols)
        last = max(frame.index[-1] for frame in load_bars(paths).values())  # the newest bar of the universe
        start = (last - pd.DateOffset(years=args.years)).date()
        ok &= compare(
            f"universe ({UNIVERSE_STOCKS})", paths, start, last.date(), args.fast, args.slow, args.qty, args.cash
        )
    else:
        print(f"universe: skipped, {UNIVERSE_STOCKS} not found")
    print("cross-check:", "AGREE" if ok else "DISAGREE")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
