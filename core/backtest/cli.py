"""``python main.py backtest``: the command-line face of :mod:`core.backtest.runner`.

``main.py`` registers the sub-command with :func:`add_backtest_parser` and dispatches to
:func:`run_backtest_command`; tests call both directly with a parser of their own.

Output: a human summary on stdout, or with ``--json`` exactly one JSON object (see
:meth:`core.backtest.runner.BacktestResult.as_json`); a progress bar on stderr when stderr is a terminal or with
``--progress``; with ``--report PATH.html`` the self-contained HTML report of :mod:`core.backtest.report`.

Exit codes: 0 done (also after Ctrl-C, with ``status`` ``interrupted``), 1 the report could not be written (the
result was printed and the run is recorded), 2 invalid options or unusable data.
Database errors propagate to ``main.py``, which maps them to its own exit codes (3 unavailable, 4 locked,
5 persistence failure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from collections.abc import Sequence


from utils.cli import db_argument, install_stop_handlers, interpreter_command, iso_date

from config.settings import PROJECT_ROOT, Settings
from core.backtest.config import (
    ALPACA_CACHE_ALIASES,
    DEFAULT_CALENDAR,
    DEFAULT_MONTE_CARLO,
    DEFAULT_WALK_FORWARD,
    BacktestConfig,
    BacktestError,
    parse_param,
    resolve_data_dir,
)
from core.backtest.progress import ProgressBar

if TYPE_CHECKING:
    from core.backtest.results import BacktestResult

# core.backtest.runner (scipy.signal, the pipeline) is imported when a backtest runs, not by every main.py command
from core.brokers.simulated import FILL_MODELS
from core.errors import EXIT_ERROR, EXIT_OK, exit_code_for
from core.risk import TradingState, describe_episode


def _amount(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise argparse.ArgumentTypeError(f"must be a finite, non-negative number: {value!r}")
    return amount


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value!r}")
    return number


def _train_test(value: str) -> tuple[int, int]:
    train, sep, test = value.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected TRAIN:TEST session counts such as 252:63, got {value!r}")
    return _positive_int(train), _positive_int(test)


def _symbols(value: str) -> tuple[str, ...]:
    symbols = tuple(dict.fromkeys(s.strip().upper() for s in value.split(",") if s.strip()))
    if not symbols:
        raise argparse.ArgumentTypeError("--symbols needs at least one symbol")
    return symbols


def add_backtest_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add the ``backtest`` sub-command to ``subparsers`` (``parents``: shared options such as ``--db``)."""
    p = subparsers.add_parser(
        "backtest",
        parents=list(parents),
        help="backtest through the daemon's agents with the simulated clock and broker",
        description=(
            "Run the six agents of the daemon over historical bars with the simulated clock and broker; every decision, "
            "order, fill and equity snapshot is recorded in the database under the backtest's run id."
        ),
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"directory of SYMBOL.csv/.parquet files (default DATA_DIR, the bundled data); {' or '.join(ALPACA_CACHE_ALIASES)}: "
        "the Alpaca bar cache (BAR_CACHE_DIR)",
    )
    data.add_argument(
        "--symbols",
        type=_symbols,
        metavar="A,B,...",
        help="symbols to trade (default: every file in the data directory)",
    )
    data.add_argument("--start", type=iso_date, help="first session, inclusive (default: the data's first bar)")
    data.add_argument("--end", type=iso_date, help="last session, inclusive (default: the data's last bar)")
    data.add_argument(
        "--calendar",
        default=DEFAULT_CALENDAR,
        metavar="auto|XNYS|CODE|data",
        help="the sessions to iterate and check bars against: an exchange_calendars code such as XNYS (the NYSE), "
        "'data' for the dates the bars have (any market; no off-session or missing-session checks), or 'auto' "
        "(default): XNYS unless more than 1%% of the bars fall on days the NYSE was closed, then 'data'",
    )
    broker = p.add_argument_group("simulated broker")
    broker.add_argument("--cash", type=_amount, help="starting cash (default INITIAL_CASH)")
    broker.add_argument(
        "--commission",
        type=_amount,
        metavar="PER_SHARE",
        help="commission per share; no minimum unless --commission-min (default COMMISSION_PER_SHARE with COMMISSION_MINIMUM)",
    )
    broker.add_argument("--commission-min", type=_amount, metavar="USD", help="minimum commission per order")
    broker.add_argument(
        "--commission-max-pct",
        type=_amount,
        metavar="FRACTION",
        help="commission cap as a fraction of the trade value, e.g. 0.01 = 1%%; 0 = no cap (default COMMISSION_MAX_PCT)",
    )
    broker.add_argument(
        "--slippage", type=_amount, metavar="BPS", help="slippage in basis points (default SLIPPAGE_BPS)"
    )
    broker.add_argument("--fill", choices=FILL_MODELS, default="next-open", help="fill model (default next-open)")
    strategy = p.add_argument_group("strategy selection")
    strategy.add_argument("--strategy", metavar="NAME", help="pin one registered strategy (see `main.py strategies`)")
    strategy.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="parameter of --strategy (repeatable); values read as int, float, true/false or text and validated by the strategy",
    )
    strategy.add_argument(
        "--selector",
        default="deterministic",
        metavar="deterministic|recorded:RUN_ID",
        help="deterministic selector (default) or the choices recorded by an earlier run",
    )
    strategy.add_argument("--llm", action="store_true", help="allow live LLM strategy selection (off by default)")
    legs = strategy.add_mutually_exclusive_group()
    legs.add_argument(
        "--brackets",
        dest="brackets",
        action="store_const",
        const=True,
        help="entries carry the strategy's stop-loss/take-profit legs (the default, except with --no-risk-limits)",
    )
    legs.add_argument(
        "--no-brackets",
        dest="brackets",
        action="store_const",
        const=False,
        help="plain market entries: no stop-loss/take-profit legs, exits on SELL signals only (the default with --no-risk-limits)",
    )
    strategy.add_argument(
        "--no-shadow", action="store_true", help="do not record the shadow ledger (faster on large universes)"
    )
    risk = p.add_argument_group("risk")
    risk.add_argument(
        "--sizing",
        default="risk",
        metavar="risk|fixed-qty:N|fixed-fraction:F",
        help="position sizing (default risk); a fixed quantity is still clipped by MAX_SHARES and the position, cash, "
        "gross and sector caps unless --no-risk-limits",
    )
    risk.add_argument(
        "--no-risk-limits",
        action="store_true",
        help="limits off: sizing only (cash-capped), no risk gates, no data-quality or drawdown stops; the position "
        "rules stay on (no second buy while long)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object with the result")
    out.add_argument("--report", type=Path, metavar="PATH.html", help="write the self-contained HTML report")
    out.add_argument("--benchmark", metavar="SYMBOL", help="buy-and-hold comparison (default SPY when the data has it)")
    out.add_argument(
        "--monte-carlo",
        type=_positive_int,
        metavar="N",
        help=f"bootstrap runs (default {DEFAULT_MONTE_CARLO}; implies the robustness checks)",
    )
    out.add_argument(
        "--walk-forward",
        type=_train_test,
        metavar="TRAIN:TEST",
        help=f"sub-period windows of the run in sessions (default {DEFAULT_WALK_FORWARD[0]}:{DEFAULT_WALK_FORWARD[1]}; implies "
        "the robustness checks): metrics of consecutive TEST-length slices of this one run, parameters not "
        "re-optimised; for a true walk-forward see `main.py optimize --walk-forward`",
    )
    out.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    out.add_argument(
        "--record-all",
        action="store_true",
        help="also record the routine decisions of every symbol and session (data ok, HOLD, skip, no order), as the daemon does; "
        "by default a backtest records every decision that carries information (signals, refusals, orders, exclusions)",
    )
    out.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    out.add_argument(
        "--verify",
        action="store_true",
        help="process every session through the whole pipeline; by default sessions in which nothing can happen "
        "(flat, no working order, the pinned strategy holding everywhere, no data flag, no trading-state change) take "
        "a short path with the same records",
    )
    p.set_defaults(command="backtest")
    return p


def config_from_args(args: argparse.Namespace, settings: Settings) -> BacktestConfig:
    """Translate parsed options into a :class:`BacktestConfig` (raises :class:`BacktestError`)."""
    params = dict(parse_param(text) for text in args.param)
    robustness = args.report is not None or args.monte_carlo is not None or args.walk_forward is not None
    config = BacktestConfig(
        data_dir=resolve_data_dir(args.data_dir, settings),
        symbols=args.symbols,
        start=args.start,
        end=args.end,
        cash=args.cash,
        commission_per_share=args.commission,
        commission_minimum=args.commission_min,
        commission_max_pct=args.commission_max_pct,
        slippage_bps=args.slippage,
        strategy=args.strategy,
        params=params,
        selector=args.selector.strip(),
        llm=args.llm,
        sizing=args.sizing.strip(),
        risk_limits=not args.no_risk_limits,
        fill=args.fill,
        brackets=args.brackets,
        shadow=not args.no_shadow,
        benchmark=args.benchmark,
        robustness=robustness,
        monte_carlo=args.monte_carlo or DEFAULT_MONTE_CARLO,
        walk_forward=args.walk_forward or DEFAULT_WALK_FORWARD,
        seed=args.seed,
        record_all=args.record_all,
        verify=args.verify,
        calendar=args.calendar.strip(),
    )
    config.check()
    return config


async def _run(settings: Settings, config: BacktestConfig, progress: ProgressBar | None) -> BacktestResult:
    stop = asyncio.Event()
    installed = install_stop_handlers(stop, "the current session")
    try:
        from core.backtest.runner import run_backtest

        return await run_backtest(settings, config, on_progress=progress, stop=stop)
    finally:
        loop = asyncio.get_running_loop()
        for sig in installed:
            loop.remove_signal_handler(sig)


def _print_summary(result: BacktestResult, out: TextIO, database_url: str) -> None:
    m = result.metrics
    closed = len(result.closed_trades)

    def pct(value: float | None, sign: str = "+") -> str:
        return "n/a" if value is None else f"{value * 100:{sign}.2f}%"

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    print(
        f"Backtest {result.run_id} ({result.status}): {result.start} .. {result.end}, {len(result.symbols)} symbols, "
        f"{result.iterations} sessions, {result.bars:,} bars in {result.elapsed_s:.1f}s "
        f"({result.bars / result.elapsed_s:,.0f} bars/s)",
        file=out,
    )
    print(
        f"  equity {float(result.initial_cash):,.2f} -> {float(result.final_equity):,.2f} ({pct(m.total_return)}), "
        f"CAGR {pct(m.cagr)}, Sharpe {num(m.sharpe)}, max drawdown {pct(m.max_drawdown, '')}",
        file=out,
    )
    print(
        f"  trades: {len(result.trades)} entries ({closed} closed, {len(result.trades) - closed} open), "
        f"win rate {pct(m.trades.win_rate, '')}, profit factor {num(m.trades.profit_factor)}",
        file=out,
    )
    if result.benchmark_metrics is not None:
        b = result.benchmark_metrics
        print(
            f"  benchmark {result.benchmark_symbol} buy & hold: {pct(b.total_return)}, CAGR {pct(b.cagr)}, "
            f"max drawdown {pct(b.max_drawdown, '')}",
            file=out,
        )
    _print_trading_state(result, out)
    if result.exclusions_by_reason:
        reasons = result.exclusions_by_reason
        waiting = ", ".join(f"{name} {reasons[name]:,}" for name in ("not_listed", "warm_up") if reasons.get(name))
        problems = ", ".join(f"{name} {n:,}" for name, n in reasons.items() if name not in ("not_listed", "warm_up"))
        print(
            f"  exclusions (symbol-sessions): {waiting or 'none not listed or warming up'}; data problems: "
            f"{problems or 'none'} (no new entries then, open positions still managed)",
            file=out,
        )
    if result.llm:
        print(
            f"  strategy selection: LLM choices {result.llm['llm_choices']}, deterministic "
            f"{result.llm['deterministic_choices']}; {result.llm['calls']} LLM calls, ${result.llm['cost_usd']} estimated",
            file=out,
        )
    if result.degraded_iterations:
        print(f"  {result.degraded_iterations} degraded iterations (see the iterations table)", file=out)
    print(f"  database: {result.database}", file=out)
    # runnable as printed from the current directory: this interpreter, this database
    query = interpreter_command(PROJECT_ROOT / "scripts" / "query_trades.py")
    db_flag = db_argument(database_url, Settings.model_fields["database_url"].default)
    print(f"  inspect: {query} trades --run {result.run_id}{db_flag}", file=out)
    print(f"           {query} performance --run {result.run_id}{db_flag}", file=out)


def _print_trading_state(result: BacktestResult, out: TextIO) -> None:
    """The drawdown locks and halts of the run, one line each; a run that ends HALTED says so loudly."""
    episodes = result.trading_episodes
    if episodes:
        print(
            f"  trading state: {result.sessions_locked} of {result.iterations} sessions LOCKED, "
            f"{result.sessions_halted} HALTED ({len(episodes)} episodes):",
            file=out,
        )
        for episode in episodes:
            print(f"    {describe_episode(episode)}", file=out)
    if result.denied:
        print("  risk refusals by rule: " + ", ".join(f"{rule} {n}" for rule, n in result.denied.items()), file=out)
    if result.final_state == TradingState.HALTED.value:
        print(
            f"  *** ended HALTED: no new entries since {episodes[-1]['start'] if episodes else 'the halt'}; "
            "the daemon would need `python main.py reset --reason ...` ***",
            file=out,
        )


def run_backtest_command(
    args: argparse.Namespace, settings: Settings, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run ``main.py backtest`` with parsed ``args``; returns the exit code (see the module docstring)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        config = config_from_args(args, settings)
        show_progress = args.progress or err.isatty()
        progress = ProgressBar(err) if show_progress else None
        result = asyncio.run(_run(settings, config, progress))
    except BacktestError as exc:
        print(f"error: {exc}", file=err)
        return exit_code_for(exc)
    if args.json:
        json.dump(result.as_json(), out, allow_nan=False)
        out.write("\n")
    else:
        _print_summary(result, out, settings.database_url)
    out.flush()
    if args.report is not None:
        from core.backtest.report import write_report  # the report's imports only when a report is asked for

        try:
            from core.backtest.runner import report_data

            path = write_report(args.report, report_data(result))
        except OSError as exc:
            print(
                f"error: cannot write the report to {args.report}: {exc} (the run is recorded as {result.run_id})",
                file=err,
            )
            return EXIT_ERROR
        print(f"report written to {path}", file=err if args.json else out)
    return EXIT_OK
