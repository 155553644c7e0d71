"""Backtests on the live pipeline: the daemon's six agents driven by a simulated clock and a simulated broker.

A backtest is a replay with the knobs a research run needs: a directory of bar files, a date range, the broker's
cash, costs and fill model, a pinned strategy (or the choices recorded by an earlier run), the sizing mode and the
risk limits. Everything goes through :func:`core.runtime.app.build_app`, so the decisions, orders, fills, positions, equity
and shadow ledger land in the database under the backtest's run id exactly as the daemon records them; the result
(trades, metrics, robustness checks, report) is then read back from that database.

Definitions
-----------
* **Sessions**: every NYSE session from ``start`` to ``end`` inclusive, one iteration per session close. Without
  ``start``/``end`` the range is the data's: the first bar of any symbol to the last bar of any symbol; a range
  reaching beyond the data is clamped to it. Bars before ``start`` are visible as history (indicator warm-up),
  bars after the iteration's session never are.
* **bars**: the symbol-days processed, i.e. the bars of the selected symbols dated within ``start``..``end``.
  **rejected_bars**: the symbol-sessions the Data agent excluded outright (still warming up, unreadable); no signal
  is computed for them. **exclusions_by_reason**: every symbol-session the Data agent did not pass as clean, by
  reason: ``not_listed`` (no bar yet: the symbol starts trading later) and ``warm_up`` (fewer bars than the
  strategies need) apart from real data problems (``missing_sessions``, ``freshness``, ``price_spike``,
  ``absurd_values``, ..., ``provider``), during which the symbol opens no position but its open ones are managed.
  **data_problem_sessions**: the symbol-sessions with a real data problem (the sum of those reasons).
* **elapsed_s**: wall time from the start of :func:`run_backtest` (after imports: reading the bar files is
  included) to the finished result (trades, metrics and, when requested, the robustness checks). Writing the HTML
  report and printing are not included.
* **trades**: the run's round trips rebuilt from its fills by :func:`core.analytics.reporting.rebuild_round_trips` (flat to
  flat, average cost, commissions of both sides in ``pnl``); an open position at the end is listed with
  ``exit_at``/``exit_price``/``pnl`` ``None``. ``metrics`` are :func:`core.analytics.metrics.compute_metrics` of the equity
  snapshots (one per session close) and the closed trips, with exposure = share of sessions holding a position.
* **timings_s**: ``elapsed_s`` by phase: ``load`` (calendar, bar files, sessions), ``setup`` (database, agents),
  ``sessions`` (the pipeline, one iteration per session, including the batched writes), ``results`` (the last writes,
  reading the run back, metrics, benchmark) and ``robustness``.
* **Caches** (``BAR_CACHE_DIR``): ``files/`` holds the parsed bar files (:class:`core.data.cache.BarFileCache`, an
  entry per source file, re-parsed when the file's modification time or size changes) and ``calendars/`` the exchange
  schedules (:class:`core.kernel.calendar.MarketCalendar`'s ``cache_dir``), so a repeated run neither parses its files
  nor builds its calendar again; the results are the same with or without them.
* **final_equity**: the simulated broker's exact equity after the last session (cash plus positions at their last
  close); the equity snapshots are the same value rounded to the cent.
* **trading_episodes**: every drawdown LOCK and HALT of the run (``core.risk.state``), from the run's
  ``trading_state`` rows in ``breaker_events``: ``{"state": "locked"|"halted", "start": first session affected,
  "end": last session affected or None when still in force at the end, "sessions": count, "reason": ...}``;
  ``sessions_locked``/``sessions_halted`` sum them; ``denied_by_rule`` counts the Risk agent's refusals by rule
  (``state``: refused because LOCKED or HALTED). ``status`` is ``"halted"`` when the run ends HALTED (it then
  needs ``main.py reset`` to trade again, were it the daemon), ``"interrupted"`` when stopped early, else
  ``"finished"``. With ``risk_limits=False`` there is no trading state: no episodes.
* **Shadow ledgers** (report only): from the run's shadow ledger (``shadow_matrices`` rows), one paper ledger per registered strategy
  and one for the selector's choices. Per symbol the ledger is long from a BUY signal to the next SELL signal (at
  the signal's close, no costs); a day's ledger return is the equal-weighted mean over the recorded symbols of
  ``held on the previous row x (close / previous close - 1)``; equity compounds from 1. A strategy not eligible for
  a symbol on a day (too little history, missing peers) counts as HOLD there.
* **Robustness** (with ``robustness=True``): a trade bootstrap of each closed trip's ``pnl`` divided by the equity
  of the last snapshot before its entry (the trip's effect on the whole account), a stationary block bootstrap of
  the daily returns (mean block 5 sessions), sub-period windows of ``train``/``test`` sessions over the equity
  curve (metrics of each test-length slice of this one run: the parameters are not re-optimised per window, so this
  is not a walk-forward optimisation; that is :mod:`core.research.walkforward`) and the Ljung-Box (10 lags) and t-tests of the daily returns;
  see :mod:`core.backtest.robustness`.

Quiet sessions (:mod:`core.backtest.skipping`): a session in which nothing can happen (the pinned strategy holding
for every symbol, no data exclusion or flag, the broker's sync on the bars reporting no fill and no order change, no
time stop due, the trading state ACTIVE with no transition) skips the Strategy, Quant and Risk stages; the Data agent
still screens its bars, the broker still syncs on them, the Execution agent still moves trailing stops and reports the
equity, and the Audit agent records the iteration from the same events, so every record (iterations, decisions,
orders, fills, equity snapshots, reports, state) and the result are those of a run that processes every session.
``verify=True`` (``--verify``) processes every session. Sessions are never skipped when the run records something for
every symbol and session that the short path does not produce: the shadow ledger on, the routine decisions recorded
(``record_all``), the LLM allowed, no pinned strategy (the selector's daily choice), or a pinned strategy that reads
the benchmark or the universe. ``settings["sessions_skipped"]`` counts the skipped sessions.

Modules: :mod:`core.backtest.config` (the request: :class:`BacktestConfig`, :class:`BacktestError`, the option
parsers), :mod:`core.backtest.data` (:class:`SnapshotProvider`), :mod:`core.backtest.selectors`
(:class:`RecordedSelector`), :mod:`core.backtest.registry` (the strategies, :func:`without_targets`),
:mod:`core.backtest.progress` (:class:`ProgressBar`), :mod:`core.backtest.results` (:class:`BacktestResult`,
:class:`TradeRecord`, :class:`Robustness`) and this module, the run itself; every name is re-exported here.

Reproducibility: nothing here reads the wall clock except for ``elapsed_s`` and the run id; identical inputs give
identical results in both bus modes (``BUS_MODE=async|sync``).
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# strategies.indicators loads scipy.signal (~1 s) on first use so that commands computing nothing start fast; every
# backtest computes indicators, so the backtester loads it up front, with its other imports
import scipy.signal  # noqa: F401
from loguru import logger
from sqlalchemy import func, select

from config.settings import BrokerName, DataProviderName, Settings
from core.runtime.app import App, build_app, replay_sessions, simulated_clock_for
from core.runtime.profile import BACKTEST, PipelineOptions
from core.backtest.config import (
    ALPACA_CACHE_ALIASES,
    AUTO_EXCHANGE,
    DATA_CALENDAR,
    DEFAULT_CALENDAR,
    DEFAULT_MONTE_CARLO,
    DEFAULT_WALK_FORWARD,
    BacktestConfig,
    BacktestError,
    discover_symbols,
    exchange_codes,
    parse_param,
    resolve_data_dir,
)
from core.backtest.data import SnapshotProvider
from core.backtest.progress import ProgressBar
from core.backtest.registry import _registry, without_targets
from core.backtest.results import BacktestResult, Robustness, TradeRecord
from core.backtest.selectors import RecordedSelector
from core.backtest.skipping import QuietSessions, skip_blocker
from core.kernel.events import DataReady, IterationStarted
from core.brokers.costs import BpsSlippage, PerShareCommission
from core.brokers.simulated import SimulatedBroker
from core.kernel.calendar import MarketCalendar
from core.data.cache import BarFileCache
from core.data.files import FileProvider
from core.data.validation import day_numbers
from core.analytics.metrics import ClosedTrade, compute_metrics, metrics_by
from core.runtime.orchestrator import IterationOutcome, run_replay
from core.persistence.models import DecisionRow, EquitySnapshotRow, Iteration
from core.risk import TRADING_STATE_EVENT, TradingState, trading_episodes
from core.kernel.calendar import EASTERN
from core.kernel.domain import datetime_index
from core.analytics.reporting import RoundTrip, rebuild_round_trips, selection_mix, shadow_entries
from core.vocabulary import DENIED_PREFIX, AgentName
from strategies.selector import FixedSelector, StrategySelector
from utils.jsonable import jsonable

__all__ = [
    "ALPACA_CACHE_ALIASES",
    "BacktestConfig",
    "BacktestError",
    "BacktestResult",
    "FixedSelector",
    "ProgressBar",
    "RecordedSelector",
    "TradeRecord",
    "audit_batch",
    "discover_symbols",
    "parse_param",
    "report_data",
    "resolve_data_dir",
    "run_backtest",
    "DATA_CALENDAR",
    "DEFAULT_CALENDAR",
    "choose_calendar",
    "data_sessions",
    "shadow_ledgers",
    "without_targets",
    # re-exported from the modules above for the command line and the tests
    "AUTO_EXCHANGE",
    "DEFAULT_MONTE_CARLO",
    "DEFAULT_WALK_FORWARD",
    "Robustness",
    "SnapshotProvider",
    "exchange_codes",
]

DEFAULT_AUDIT_BATCH = 250
# Symbol-iterations buffered per audit transaction: an iteration's records (decisions with their inputs, the shadow
# ledger) take ~15 kB per symbol, so 250 iterations of 500 symbols would hold ~1.7 GB before the commit.
AUDIT_SYMBOL_ITERATIONS = 2500
DAILY_BLOCK = 5
RETURN_TEST_LAGS = 10
DEFAULT_BENCHMARK = "SPY"
_FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
AUTO_OFF_SESSION_SHARE = 0.01  # auto: more than this share of the bars on days the NYSE was closed -> another market
DATA_SESSION_TIME = time_of_day(23, 59, 59)
# under BAR_CACHE_DIR: the parsed bar files of earlier backtests (core.data.cache.BarFileCache) and the exchange
# schedules (core.kernel.calendar.MarketCalendar's cache_dir)
BAR_FILE_CACHE, CALENDAR_CACHE = "files", "calendars"


def audit_batch(config: BacktestConfig, symbols: int) -> int:
    """Iterations per database transaction: ``config.audit_batch``, else 250 capped so that a batch holds at most
    :data:`AUDIT_SYMBOL_ITERATIONS` symbol-iterations (250 for up to 10 symbols, 5 for 500)."""
    if config.audit_batch is not None:
        return config.audit_batch
    return max(1, min(DEFAULT_AUDIT_BATCH, AUDIT_SYMBOL_ITERATIONS // max(1, symbols)))


def data_sessions(frames: Mapping[str, pd.DataFrame], start: date, end: date) -> list[datetime]:
    """``--calendar data``: one session per date any symbol has a bar on, from ``start`` to ``end`` inclusive, each
    decided at the end of its day (23:59:59 UTC: every bar dated that day is visible, none of the next)."""
    lo, hi = pd.Timestamp(start, tz=UTC), pd.Timestamp(end, tz=UTC) + pd.Timedelta(days=1)
    days: set[date] = set()
    for frame in frames.values():
        index = frame.index
        days.update(d.date() for d in index[(index >= lo) & (index < hi)])
    return [datetime.combine(d, DATA_SESSION_TIME, UTC) for d in sorted(days)]


def choose_calendar(frames: Mapping[str, pd.DataFrame], nyse: MarketCalendar) -> tuple[str, str]:
    """``--calendar auto``: the NYSE's sessions unless more than 1% of the bars (every bar of the selected symbols
    within the calendar's range) fall on days the NYSE was closed, i.e. the data come from another market (a European
    index, a 7-day crypto series); then the data's own dates. A few stray weekend bars in US data stay errors the Data
    agent reports. Returns ``(calendar, why)``."""
    sessions = nyse.session_days
    total = off = 0
    for frame in frames.values():
        days = day_numbers(datetime_index(frame))
        days = days[(days >= sessions[0]) & (days <= sessions[-1])]
        total += len(days)
        off += int(np.count_nonzero(~np.isin(days, sessions)))
    share = off / total if total else 0.0
    facts = f"{off:,} of {total:,} bars ({share:.1%}) fall on days {AUTO_EXCHANGE} was closed"
    if share > AUTO_OFF_SESSION_SHARE:
        return DATA_CALENDAR, f"auto: {facts}, so the sessions are the data's own dates"
    return AUTO_EXCHANGE, f"auto: {facts}"


def _range(frames: Mapping[str, pd.DataFrame], start: date | None, end: date | None) -> tuple[date, date]:
    first = min(f.index[0] for f in frames.values()).date()
    last = max(f.index[-1] for f in frames.values()).date()
    start = max(start, first) if start is not None else first
    end = min(end, last) if end is not None else last
    if start > end:
        raise BacktestError(f"no bars between the requested dates: the data covers {first} .. {last}")
    return start, end


def _bars_in_range(frames: Mapping[str, pd.DataFrame], start: date, end: date) -> int:
    lo = pd.Timestamp(start, tz=UTC)
    hi = pd.Timestamp(end, tz=UTC) + pd.Timedelta(days=1)
    return sum(
        int(f.index.searchsorted(hi, side="left") - f.index.searchsorted(lo, side="left")) for f in frames.values()
    )


def _selector(settings: Settings, config: BacktestConfig, registry: Mapping[str, Any]) -> StrategySelector | None:
    if config.strategy is not None:
        try:
            return FixedSelector(registry, config.strategy, origin="backtest --strategy")
        except ValueError as exc:  # an unregistered name: the backtest's own error, as every bad option
            raise BacktestError(str(exc)) from exc
    if config.selector.startswith("recorded:"):
        return RecordedSelector.load(settings.database_url, config.selector.removeprefix("recorded:").strip(), registry)
    return None  # build_app's DeterministicSelector (the daemon's)


def _broker(settings: Settings, config: BacktestConfig, cash: Decimal) -> SimulatedBroker:
    per_share = (
        config.commission_per_share
        if config.commission_per_share is not None
        else Decimal(str(settings.commission_per_share))
    )
    if config.commission_minimum is not None:
        minimum = config.commission_minimum
    elif config.commission_per_share is not None:
        minimum = Decimal("0")  # an explicit per-share rate is the whole commission unless a minimum is given too
    else:
        minimum = Decimal(str(settings.commission_minimum))
    # the cap (a fraction of the trade value) only ever lowers a commission: it applies to an explicit rate too
    cap = (
        config.commission_max_pct
        if config.commission_max_pct is not None
        else Decimal(str(settings.commission_max_pct))
    )
    slippage = config.slippage_bps if config.slippage_bps is not None else Decimal(str(settings.slippage_bps))
    return SimulatedBroker(
        cash,
        commission=PerShareCommission(per_share=per_share, minimum=minimum, max_pct=cap if cap > 0 else None),
        slippage=BpsSlippage(slippage),
        fill_model=config.fill,  # type: ignore[arg-type]
        name="simulated",
    )


@dataclass(frozen=True, slots=True)
class _Recorded:
    equity: pd.Series
    exposure: pd.Series
    trips: tuple[RoundTrip, ...]
    shadow: list[tuple[datetime, str, str, float, dict[str, Any]]] | None
    rejected_bars: int
    transitions: list[tuple[date, str, str, str]]
    denied: dict[str, int]
    llm: dict[str, Any] = field(default_factory=dict)


def _read_run(app: App, want_shadow: bool) -> _Recorded:
    with app.repository.session() as session:
        rows = session.execute(
            select(EquitySnapshotRow.at, EquitySnapshotRow.equity, EquitySnapshotRow.positions)
            .where(EquitySnapshotRow.run_id == app.run_id)
            .order_by(EquitySnapshotRow.at, EquitySnapshotRow.id)
        ).all()
        book = rebuild_round_trips(session, run_id=app.run_id)
        rejected = session.scalar(
            select(func.coalesce(func.sum(Iteration.symbols_total - Iteration.symbols_ok), 0)).where(
                Iteration.run_id == app.run_id
            )
        )
        denied = {
            action.removeprefix(DENIED_PREFIX): int(n)
            for action, n in session.execute(
                select(DecisionRow.action, func.count())
                .where(
                    DecisionRow.run_id == app.run_id,
                    DecisionRow.agent == AgentName.RISK,
                    DecisionRow.action.like(f"{DENIED_PREFIX}%"),
                )
                .group_by(DecisionRow.action)
                .order_by(func.count().desc(), DecisionRow.action)
            )
        }
        shadow = None
        if want_shadow:
            shadow = [
                (e.as_of, e.symbol, e.selected, e.close, e.signals) for e in shadow_entries(session, run_id=app.run_id)
            ]
    index = pd.DatetimeIndex([at for at, _, _ in rows]).tz_convert(UTC) if rows else pd.DatetimeIndex([], tz=UTC)
    equity = pd.Series([float(e) for _, e, _ in rows], index=index, dtype=float, name="equity")
    exposure = pd.Series([1.0 if p > 0 else 0.0 for _, _, p in rows], index=index, dtype=float, name="exposure")
    keep = ~index.duplicated(keep="last")
    trips = tuple(sorted(book.trips, key=lambda t: (t.entry_at, t.symbol)))
    transitions = app.repository.trading_transitions(app.run_id, TRADING_STATE_EVENT)
    llm: dict[str, Any] = {}
    if app.agents[AgentName.STRATEGY].uses_llm:
        with app.repository.session() as session:
            chosen, fallback, cost, calls = selection_mix(session, app.run_id)
        llm = {"llm_choices": chosen, "deterministic_choices": fallback, "calls": calls, "cost_usd": str(cost)}
    return _Recorded(equity[keep], exposure[keep], trips, shadow, int(rejected or 0), transitions, denied, llm)


def shadow_ledgers(rows: Sequence[tuple[datetime, str, str, float, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Per-ledger statistics of the shadow signals (see the module docstring for the ledger's definition).

    ``rows``: ``(as_of, symbol, selected strategy, close, {strategy: [action, strength]})``. Returns one dict per
    ledger, the selector first, then the strategies in alphabetical order.
    """
    if not rows:
        return []
    frame = pd.DataFrame(
        {
            "as_of": pd.DatetimeIndex([r[0] for r in rows]).tz_convert(UTC),
            "symbol": [r[1] for r in rows],
            "close": np.array([r[3] for r in rows], dtype=float),
            "row": np.arange(len(rows)),
        }
    ).sort_values(["symbol", "as_of"], kind="stable", ignore_index=True)
    order = frame["row"].to_numpy()
    signals = [rows[i][4] for i in order]
    selected = [rows[i][2] for i in order]
    symbol = frame["symbol"]
    as_of = frame["as_of"]
    closes = frame["close"].to_numpy()
    returns = (frame["close"] / frame.groupby("symbol", sort=False)["close"].shift(1) - 1.0).fillna(0.0).to_numpy()
    first_row = (frame.groupby("symbol", sort=False).cumcount() == 0).to_numpy()
    codes_of = {"BUY": 1.0, "SELL": -1.0}

    def ledger(codes: np.ndarray) -> dict[str, Any]:
        state = pd.Series(np.where(codes == 0.0, np.nan, codes)).groupby(symbol, sort=False).ffill()
        held = (state == 1.0).to_numpy()
        held_before = np.concatenate([[False], held[:-1]])
        held_before[first_row] = False
        daily = pd.Series(np.where(held_before, returns, 0.0)).groupby(as_of).mean()
        equity = (1.0 + daily).cumprod()
        exposure = pd.Series(held_before.astype(float)).groupby(as_of).max()
        trade_returns: list[float] = []
        entry_close: dict[str, float] = {}
        symbols = symbol.to_numpy()
        for i in np.flatnonzero(held != held_before):  # entries and exits at the signal closes
            if held[i]:
                entry_close[symbols[i]] = closes[i]
            elif symbols[i] in entry_close:
                trade_returns.append(float(closes[i] / entry_close.pop(symbols[i]) - 1.0))
        m = compute_metrics(equity, exposure=exposure)
        wins = sum(1 for r in trade_returns if r > 0)
        return {
            "total_return": m.total_return,
            "cagr": m.cagr,
            "sharpe": m.sharpe,
            "max_drawdown": m.max_drawdown,
            "exposure": m.exposure,
            "entries": int(np.count_nonzero(held & ~held_before)),
            "closed_trades": len(trade_returns),
            "win_rate": wins / len(trade_returns) if trade_returns else None,
            "avg_trade_return": float(np.mean(trade_returns)) if trade_returns else None,
        }

    def codes_for(pick: Callable[[int], str | None]) -> np.ndarray:
        return np.array([codes_of.get((signals[i].get(pick(i)) or ["HOLD"])[0], 0.0) for i in range(len(signals))])

    out = [{"ledger": "selector", **ledger(codes_for(lambda i: selected[i]))}]
    for name in sorted({name for s in signals for name in s}):

        def fixed(i: int, name: str = name) -> str:
            return name

        out.append({"ledger": name, **ledger(codes_for(fixed))})
    return out


def _robustness(equity: pd.Series, closed: Sequence[ClosedTrade], initial: float, config: BacktestConfig) -> Robustness:
    from core.backtest.robustness import (  # scipy/statsmodels only when asked for
        bootstrap_daily,
        bootstrap_trades,
        return_tests,
        summarize_walk_forward,
        walk_forward,
        walk_forward_evaluate,
    )

    notes: list[str] = []
    bootstrap: dict[str, Any] = {}
    if closed:
        before = [equity.asof(pd.Timestamp(t.entry_at)) for t in closed]
        returns = [
            t.pnl / (b if isinstance(b, float) and math.isfinite(b) and b > 0 else initial)
            for t, b in zip(closed, before, strict=False)
        ]
        bootstrap["trades (pnl / equity before entry)"] = bootstrap_trades(
            returns, n=config.monte_carlo, seed=config.seed
        )
    else:
        notes.append("trade bootstrap skipped: no closed trades")
    daily = equity.pct_change().dropna()
    if len(daily) >= 2:
        bootstrap[f"daily returns (stationary blocks of {DAILY_BLOCK})"] = bootstrap_daily(
            daily.to_numpy(), n=config.monte_carlo, seed=config.seed, block=DAILY_BLOCK, initial=float(equity.iloc[0])
        )
    else:
        notes.append("daily bootstrap skipped: fewer than two daily returns")
    train, test = config.walk_forward
    windows = walk_forward(datetime_index(equity), train=train, test=test)
    results = walk_forward_evaluate(equity, windows, trades=closed) if windows else []
    summary = summarize_walk_forward(results) if results else None
    if not windows:
        notes.append(f"walk-forward skipped: {len(equity)} sessions, a window needs {train + test}")
    tests = return_tests(daily.to_numpy(), lags=RETURN_TEST_LAGS) if len(daily) > RETURN_TEST_LAGS else None
    if tests is None:
        notes.append(f"return tests skipped: need more than {RETURN_TEST_LAGS} daily returns")
    return Robustness(bootstrap, results, summary, tests, tuple(notes))


async def run_backtest(
    settings: Settings,
    config: BacktestConfig,
    *,
    on_progress: Callable[[int, int, IterationOutcome], None] | None = None,
    stop: asyncio.Event | None = None,
    on_equity: Callable[[int, int, datetime, float], None] | None = None,
) -> BacktestResult:
    """Run the backtest through the daemon's pipeline and read its result back from the database.

    ``on_equity(done, total, session, equity)``, when given, sees the simulated broker's equity after every session
    (an optimiser's pruner judges a trial on its path so far and may set ``stop``).

    Raises :class:`BacktestError` for a request that cannot run; database errors (``DatabaseUnavailable``,
    ``DaemonAlreadyRunning``) and ``PersistenceFailure`` propagate as in the replay.
    """
    started = time.perf_counter()
    config.check()
    data_dir = config.data_dir if config.data_dir is not None else Path(settings.data_dir)
    symbols = (
        tuple(dict.fromkeys(s.strip().upper() for s in config.symbols))
        if config.symbols
        else discover_symbols(data_dir)
    )
    if not data_dir.is_dir():
        raise BacktestError(f"data directory {data_dir} does not exist or is not a directory")
    provider = FileProvider(data_dir, cache=BarFileCache(Path(settings.bar_cache_dir) / BAR_FILE_CACHE))
    calendars = Path(settings.bar_cache_dir) / CALENDAR_CACHE
    probe = provider.history(symbols, end=_FAR_FUTURE)
    if probe.unknown:
        unknown = [s for s in symbols if s in probe.unknown]
        raise BacktestError(f"--symbols: no bars for {', '.join(unknown)} in {data_dir}: {probe.errors[unknown[0]]}")
    if probe.errors:
        problems = "; ".join(f"{s}: {e}" for s, e in probe.errors.items())
        raise BacktestError(f"unusable bars in {data_dir}: {problems}")
    # the calendar covers the data, however old (IBM's bars start in 1962)
    first_bar = min(f.index[0] for f in probe.frames.values()).date()
    calendar_name, calendar_why = config.calendar, f"--calendar {config.calendar}"
    if calendar_name == DEFAULT_CALENDAR:
        nyse = MarketCalendar.covering(first_bar, AUTO_EXCHANGE, cache_dir=calendars)
        calendar_name, calendar_why = choose_calendar(probe.frames, nyse)
        if calendar_name == DATA_CALENDAR:
            logger.warning("backtest calendar: {}", calendar_why)
    by_data = calendar_name == DATA_CALENDAR
    calendar = MarketCalendar.covering(first_bar, AUTO_EXCHANGE if by_data else calendar_name, cache_dir=calendars)
    start, end = _range(probe.frames, config.start, config.end)
    sessions = data_sessions(probe.frames, start, end) if by_data else replay_sessions(calendar, start, end)
    if not sessions:
        raise BacktestError(f"no {'bar' if by_data else calendar_name + ' session'} between {start} and {end}")
    start, end = sessions[0].date(), sessions[-1].date()  # a session close (UTC) falls on its session's date
    bars = _bars_in_range(probe.frames, start, end)

    timings = {"load": time.perf_counter() - started}
    mark = time.perf_counter()
    registry = _registry(settings, config)
    selector = _selector(settings, config, registry)
    cash = config.cash if config.cash is not None else Decimal(str(settings.initial_cash))
    broker = _broker(settings, config, cash)
    run_settings = settings.model_copy(
        update={
            "symbols": list(symbols),
            "data_provider": DataProviderName.FILES,
            "data_dir": data_dir,
            "broker": BrokerName.SIMULATED,
            "initial_cash": float(cash),
            "shadow_ledger": config.shadow,
        }
    )
    clock = simulated_clock_for(sessions)
    app = build_app(
        run_settings,
        profile=BACKTEST,
        clock=clock,
        provider=SnapshotProvider(probe.frames, end=end),
        broker=broker,
        calendar=calendar,
        allow_llm=config.llm,
        options=PipelineOptions(
            sizing=config.sizing,
            enforce_limits=config.risk_limits,
            selector=selector,
            registry=registry,
            audit_batch=audit_batch(config, len(symbols)),
            routine_decisions=config.record_all,
            validate_sessions=not by_data,
        ),
    )
    app.orchestrator.summary_level = "DEBUG"  # one INFO line per session is noise in a backtest
    quiet = _quiet_sessions(app, broker, config, registry)
    stop = stop if stop is not None else asyncio.Event()
    timings["setup"] = time.perf_counter() - mark
    mark = time.perf_counter()
    progress = on_progress
    if on_equity is not None:

        def progress(done: int, total: int, outcome: IterationOutcome) -> None:
            if on_progress is not None:
                on_progress(done, total, outcome)
            on_equity(done, total, sessions[done - 1], float(_settled(broker.account()).equity))

    # The objects alive now (modules, the frames, the app) live for the whole run: moved out of the collector's
    # generations, a full collection no longer walks them (the 2,519-session default backtest: 5 full collections,
    # ~0.3 s of CPU otherwise). Unfrozen after the sessions, so a process running several backtests collects them.
    gc.freeze()
    try:
        try:
            outcomes = await run_replay(app.orchestrator, clock.advance_to, sessions, stop=stop, on_progress=progress)
        finally:
            gc.unfreeze()
        timings["sessions"] = time.perf_counter() - mark
        mark = time.perf_counter()
        await app.bus.close()
        app.agents[AgentName.AUDIT].flush()
        account = await broker.account()
        recorded = _read_run(app, want_shadow=config.shadow and config.robustness)
    except BaseException:
        app.close("failed")
        raise
    final_state = app.agents[AgentName.RISK].state
    episodes = trading_episodes(recorded.transitions, [s.astimezone(EASTERN).date() for s in sessions[: len(outcomes)]])
    if len(outcomes) < len(sessions):
        status = "interrupted"
    else:
        status = "halted" if final_state is TradingState.HALTED else "finished"
    app.close(status)

    trades = [TradeRecord.of(t) for t in recorded.trips]
    closed = sorted(
        (t.to_closed_trade() for t in recorded.trips if t.closed), key=lambda t: (t.exit_at, t.entry_at, t.symbol)
    )
    if recorded.equity.empty:
        raise BacktestError("the run recorded no equity snapshot (no iteration completed)")
    metrics = compute_metrics(recorded.equity, closed, exposure=recorded.exposure)
    benchmark_symbol = config.benchmark.strip().upper() if config.benchmark else None
    if benchmark_symbol is None and DEFAULT_BENCHMARK in discover_symbols(data_dir):
        benchmark_symbol = DEFAULT_BENCHMARK
    benchmark = benchmark_metrics = None
    if benchmark_symbol is not None:
        found = provider.history([benchmark_symbol], end=_FAR_FUTURE)
        if benchmark_symbol not in found.frames:
            raise BacktestError(f"--benchmark {benchmark_symbol}: {found.errors.get(benchmark_symbol, 'no bars')}")
        closes = found.frames[benchmark_symbol]["close"]
        at_close = {s.date(): s for s in sessions}  # session date -> its close (UTC), the equity curve's grid
        keep = [d.date() in at_close for d in closes.index]
        series = closes[keep]
        if len(series):
            benchmark = pd.Series(
                series.to_numpy(dtype=float),
                index=pd.DatetimeIndex([at_close[d.date()] for d in series.index]).tz_convert(UTC),
                name=benchmark_symbol,
            )
            benchmark_metrics = compute_metrics(benchmark)
    shadow = shadow_ledgers(recorded.shadow) if recorded.shadow is not None else None
    timings["results"] = time.perf_counter() - mark
    mark = time.perf_counter()
    robustness = _robustness(recorded.equity, closed, float(cash), config) if config.robustness else None
    if robustness is not None:
        timings["robustness"] = time.perf_counter() - mark
    elapsed = time.perf_counter() - started
    return BacktestResult(
        run_id=app.run_id,
        status=status,
        database=app.engine.url.render_as_string(hide_password=True),
        data_dir=data_dir,
        symbols=symbols,
        start=start,
        end=end,
        initial_cash=cash,
        final_equity=account.equity,
        iterations=len(outcomes),
        degraded_iterations=sum(1 for o in outcomes if o.status != "ok"),
        bars=bars,
        rejected_bars=recorded.rejected_bars,
        exclusions_by_reason=dict(sorted(app.agents[AgentName.DATA].exclusion_counts.items())),
        elapsed_s=elapsed,
        trades=trades,
        closed_trades=closed,
        equity=recorded.equity,
        metrics=metrics,
        per_strategy=metrics_by(closed, "strategy"),
        benchmark_symbol=benchmark_symbol if benchmark is not None else None,
        benchmark=benchmark,
        benchmark_metrics=benchmark_metrics,
        settings={
            **_describe(config, cash, broker, data_dir),
            "calendar": calendar_name,
            "calendar_reason": calendar_why,
            "sessions_skipped": quiet.skipped if quiet is not None else 0,
        },
        shadow=shadow,
        robustness=robustness,
        timings=timings,
        trading_episodes=episodes,
        final_state=final_state.value,
        denied=recorded.denied,
        llm=recorded.llm,
    )


def _settled(coroutine: Any) -> Any:
    """The value of a coroutine that completes without suspending (the simulated broker's ``account()``), from
    synchronous code running inside the event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the coroutine suspended; it cannot be read synchronously")


def _quiet_sessions(
    app: App, broker: SimulatedBroker, config: BacktestConfig, registry: Mapping[str, Any]
) -> QuietSessions | None:
    """Skip the run's quiet sessions (:mod:`core.backtest.skipping`) unless something rules it out (``--verify``,
    recorded routine decisions, the shadow ledger, the LLM, no pinned strategy): then None, every session processed."""
    strategy = registry.get(config.strategy) if config.strategy is not None else None
    why = skip_blocker(
        verify=config.verify,
        routine_decisions=config.record_all,
        llm=config.llm,
        strategy=strategy,
    )
    if why is not None or strategy is None:
        logger.debug("backtest: every session processed ({})", why)
        return None
    quiet = QuietSessions(app.agents, broker, strategy)
    app.bus.replace(IterationStarted, "data.on_iteration", quiet.on_iteration)
    app.bus.replace(DataReady, "execution.on_data", quiet.on_data)
    return quiet


def _describe(config: BacktestConfig, cash: Decimal, broker: SimulatedBroker, data_dir: Path) -> dict[str, Any]:
    described = broker._config()  # the broker's own description of its costs and fill model
    return jsonable(
        {
            "data_dir": str(data_dir),
            "cash": cash,
            "fill": config.fill,
            "commission": described["commission"],
            "slippage": described["slippage"],
            "strategy": config.strategy,
            "params": dict(config.params),
            "selector": "fixed:" + config.strategy if config.strategy else ("llm" if config.llm else config.selector),
            "sizing": config.sizing,
            "risk_limits": config.risk_limits,
            "brackets": config.use_brackets,
            "shadow_ledger": config.shadow,
        },
        decimals="float",
        infinities="text",
    )


def report_data(result: BacktestResult) -> dict[str, Any]:
    """The :class:`core.backtest.report.ReportData` of a result."""
    robust = result.robustness
    data: dict[str, Any] = {
        "equity": result.equity,
        "benchmark": result.benchmark,
        "title": f"Backtest {result.run_id}",
        "params": {
            "run id": result.run_id,
            "database": result.database,
            "status": result.status,
            "period": f"{result.start} .. {result.end}",
            "symbols": ", ".join(result.symbols),
            "sessions": result.iterations,
            "bars": result.bars,
            "exclusions (symbol-sessions by reason)": ", ".join(
                f"{k} {v}" for k, v in result.exclusions_by_reason.items()
            )
            or "none",
            "degraded iterations": result.degraded_iterations,
            "initial_cash": float(result.initial_cash),
            "final_equity": float(result.final_equity),
            "benchmark": result.benchmark_symbol or "none",
            "trading state at the end": result.final_state,
            "sessions locked / halted": f"{result.sessions_locked} / {result.sessions_halted}",
            **{k: (v if not isinstance(v, dict | list) else str(v)) for k, v in result.settings.items()},
            "shadow ledger basis": "long from BUY to SELL at the signal closes, equal weight per symbol, no costs",
        },
        "metrics": result.metrics,
        "trades": [t.as_dict() for t in result.trades],
        "per_strategy": result.per_strategy,
        "trading_episodes": result.trading_episodes,
    }
    if result.shadow is not None:
        data["shadow"] = result.shadow
    episodes = getattr(result, "trading_episodes", None)  # the drawdown protection's lock/halt episodes
    if episodes is not None:
        data["trading_episodes"] = episodes
        data["sessions_locked"] = getattr(result, "sessions_locked", None)
        data["sessions_halted"] = getattr(result, "sessions_halted", None)
    if robust is not None:
        data["bootstrap"] = robust.bootstrap
        data["walk_forward"] = robust.walk_forward
        data["walk_forward_summary"] = robust.walk_forward_summary
        data["tests"] = robust.tests
        if robust.notes:
            data["params"]["robustness notes"] = "; ".join(robust.notes)
    return data
