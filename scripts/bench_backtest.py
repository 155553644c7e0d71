#!/usr/bin/env python3
"""Benchmark: ``main.py backtest`` (the daemon's full pipeline) against backtrader on the same bars.

Data sets (nothing is copied into the repository: each run reads a temporary directory):

* ``universe``: the first ``--universe-symbols`` (20) stocks of ``../shared/data/universe/stocks`` (alphabetically),
  the last ``--years`` (10) years of that data, as symlinks ``SYMBOL.csv -> symbol.us.txt`` in a temporary directory
  (those files may be used for tests and benchmarks only);
* ``synthetic``: ``--synthetic-symbols`` (500) symbols of :func:`core.data.synthetic.generate_bars` over ``--years``
  years of NYSE sessions, written as one Parquet file per symbol to a temporary directory.

Each measurement runs in a child process of its own (a fresh interpreter, so peak memory is that run's):

* ``pipeline``: the backtest runner with the daemon's defaults (deterministic selector over the ten strategies,
  risk sizing and limits, bracket orders, shadow ledger), a temporary SQLite database, batched writes;
* ``pipeline-sma``: the same pipeline doing backtrader's work: ``trend_following`` 10/30 pinned, 10 shares per entry,
  no risk limits, no brackets, no costs, with the default shadow ledger on (the issue's condition);
* ``backtrader``: ``scripts/bench_backtrader.py``'s SMA 10/30 crossover (dev-only dependency, skipped without it).

Printed per run: bars (symbol-days in the range), ``elapsed_s`` (data loading to final result, after imports) and
the CPU time of the same span (``time.process_time``: less sensitive than wall time to a machine shared with others),
bars/s on it, the whole child process's wall time (interpreter start, imports, database set-up, the run), and the
peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``). Then the speed ratio to backtrader.
Then what the pipeline-sma run spent outside its sessions (``timings_s``: loading, set-up, results) and the event bus
alone (``bus-floor``: the daemon's eight subscriptions with pass-through handlers, one publish per session), beside
the issue's target of 10x backtrader's elapsed time. Last, each of the issue's targets with the measured ratio
(backtrader's ``elapsed_s`` / the run's) and PASS or MISS: SMA 10/30 at least 10x, the default pipeline at least 5x
(universe), 500 synthetic symbols at least 15x with a peak resident memory under 1 GB. With ``--profile`` the pipeline child also runs under cProfile and prints its top functions per iteration.

    .venv/bin/python scripts/bench_backtest.py                     # both data sets (the synthetic one takes a while)
    .venv/bin/python scripts/bench_backtest.py --only universe --profile
    .venv/bin/python scripts/bench_backtest.py --only synthetic --synthetic-symbols 100
"""

from __future__ import annotations

_STARTED = __import__("time").perf_counter()  # before the heavy imports: whole-process time of a child run

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
UNIVERSE_STOCKS = REPO_ROOT.parent / "shared" / "data" / "universe" / "stocks"
SMA_FAST, SMA_SLOW, SMA_QTY, SMA_CASH = 10, 30, 10, 10_000_000
# the targets: (label, run, minimum speed-up over backtrader's elapsed time)
TARGETS = (
    ("universe", "pipeline-sma", 10.0, "SMA 10/30, shadow ledger on: >= 10x backtrader"),
    ("universe", "pipeline", 5.0, "default pipeline (selector, risk, shadow): >= 5x backtrader"),
    ("synthetic", "pipeline-sma", 15.0, "500 synthetic symbols: >= 15x backtrader, peak < 1 GB"),
)
PEAK_LIMIT_MB = 1024.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kilobytes on Linux


# ---------------------------------------------------------------------------------------------------- data sets


def universe_dir(target: Path, count: int, years: int) -> tuple[Path, date, date]:
    """The first ``count`` universe stocks, cut to their last ``years`` years, one Parquet file per symbol in ``target``
    (a temporary directory: the universe is never copied into the repo). Prices as they are: with zero slippage the
    simulated broker fills at the bar's own price, as backtrader does."""
    import pandas as pd

    from core.data.files import read_bars_file

    target.mkdir(parents=True, exist_ok=True)
    files = sorted(UNIVERSE_STOCKS.glob("*.us.txt"))[:count]
    if len(files) < count:
        raise SystemExit(f"universe: only {len(files)} files in {UNIVERSE_STOCKS}, {count} wanted")
    frames = {}
    for path in files:
        link = target / f".{path.name}.csv"  # read_bars_file knows .csv; a dot-file is not listed as a symbol
        link.symlink_to(path)
        frames[path.name.split(".")[0].upper()] = read_bars_file(link)
        link.unlink()
    last = max(frame.index[-1] for frame in frames.values())
    first = last - pd.DateOffset(years=years) + pd.Timedelta(days=1)
    for symbol, frame in frames.items():
        frame = frame.loc[frame.index >= first].copy()
        frame.to_parquet(target / f"{symbol}.parquet")
    return target, first.date(), last.date()


def synthetic_dir(target: Path, count: int, years: int) -> tuple[Path, date, date]:
    """``count`` synthetic symbols over ``years`` years of sessions ending 2019-12-31, one Parquet file each (prices with
    all their decimals)."""
    from core.kernel.calendar import MarketCalendar
    from core.data.synthetic import generate_bars

    target.mkdir(parents=True, exist_ok=True)
    end = date(2019, 12, 31)
    start = date(end.year - years + 1, 1, 1)
    index = MarketCalendar().sessions_index(start, end)
    for k in range(count):
        symbol = f"SYN{k:03d}"
        frame = generate_bars(symbol, index, seed=7)
        frame.to_parquet(target / f"{symbol}.parquet")
    return target, index[0].date(), index[-1].date()


# ---------------------------------------------------------------------------------------------------- children


def _child_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    before = time.perf_counter()
    import asyncio
    import cProfile
    import io
    import pstats
    from decimal import Decimal

    from config.settings import Settings
    from core.backtest.runner import BacktestConfig, run_backtest
    from utils.logging import configure_logging

    imports_s = time.perf_counter() - before
    configure_logging(level="ERROR", log_dir=None)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite:///{args.db}",
        log_dir=Path(args.db).parent / "logs",
        bar_cache_dir=Path(args.db).parent / "cache",
    )
    config = BacktestConfig(
        data_dir=Path(args.data_dir), start=date.fromisoformat(args.start), end=date.fromisoformat(args.end)
    )
    if args.child == "pipeline-sma":
        config = BacktestConfig(
            data_dir=config.data_dir, start=config.start, end=config.end, strategy="trend_following",
            params={"fast": SMA_FAST, "slow": SMA_SLOW}, sizing=f"fixed-qty:{SMA_QTY}", risk_limits=False, brackets=False,
            shadow=True, commission_per_share=Decimal(0), slippage_bps=Decimal(0), cash=Decimal(SMA_CASH),
        )  # fmt: skip
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    cpu0 = time.process_time()
    result = asyncio.run(run_backtest(settings, config))
    cpu = time.process_time() - cpu0
    if profiler is not None:
        profiler.disable()
    out: dict[str, Any] = {
        "bars": result.bars,
        "iterations": result.iterations,
        "elapsed_s": result.elapsed_s,
        "cpu_s": cpu,
        "final_equity": float(result.final_equity),
        "trades": len(result.trades),
        "rejected_bars": result.rejected_bars,
        "peak_mb": _peak_mb(),
        "imports_s": imports_s,
        "timings": result.timings,
    }
    if profiler is not None:
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(25)
        out["profile"] = text.getvalue()
    return out


def _child_bus_floor(args: argparse.Namespace) -> dict[str, Any]:
    """The event bus alone, per session: the daemon's eight subscriptions (``core.runtime.app.build_app``) in async mode with
    handlers that only derive the next stage's event, one publish per session. What every session of the pipeline
    costs before any agent does any work."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from core.kernel.bus import EventBus
    from core.kernel.events import (
        ApprovedReady,
        DataReady,
        ExecutedReady,
        IterationStarted,
        SignalsReady,
        ValidatedReady,
    )

    def then(kind: type) -> Any:
        return lambda e: kind(iteration_id=e.iteration_id, as_of=e.as_of, previous=e)

    async def run(sessions: int) -> float:
        bus = EventBus("async")
        bus.subscribe(IterationStarted, then(DataReady), "data.on_iteration")
        bus.subscribe(DataReady, lambda e: None, "execution.on_data")
        bus.subscribe(DataReady, then(SignalsReady), "strategy.on_data")
        bus.subscribe(SignalsReady, then(ValidatedReady), "quant.on_signals")
        bus.subscribe(ValidatedReady, then(ApprovedReady), "risk.on_validated")
        bus.subscribe(ApprovedReady, then(ExecutedReady), "execution.on_approved")
        bus.subscribe(ExecutedReady, lambda e: None, "audit.on_executed")
        bus.subscribe(ExecutedReady, lambda e: None, "risk.on_executed")
        first = datetime(2010, 1, 4, 21, tzinfo=UTC)
        started = time.perf_counter()
        for n in range(sessions):
            await bus.publish(
                IterationStarted(iteration_id=f"floor-{n:06d}", as_of=first + timedelta(days=n), seq=n + 1)
            )
        return time.perf_counter() - started

    seconds = asyncio.run(run(args.sessions))
    return {"sessions": args.sessions, "elapsed_s": seconds, "per_session_us": seconds / args.sessions * 1e6}


def _child_backtrader(args: argparse.Namespace) -> dict[str, Any]:
    before = time.perf_counter()
    import pandas as pd

    from core.data.files import read_bars_file
    from scripts.bench_backtrader import run_backtrader

    started, cpu0 = time.perf_counter(), time.process_time()
    lo, hi = pd.Timestamp(args.start, tz="UTC"), pd.Timestamp(args.end, tz="UTC")
    frames = {}
    for path in sorted(Path(args.data_dir).iterdir()):
        frame = read_bars_file(path)
        frames[path.stem.upper()] = frame.loc[(frame.index >= lo) & (frame.index <= hi)]
    result = run_backtrader(frames, SMA_FAST, SMA_SLOW, SMA_QTY, float(SMA_CASH))
    return {
        "bars": sum(len(f) for f in frames.values()),
        "elapsed_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu0,
        "final_equity": result.final_equity,
        "trades": len(result.trades),
        "peak_mb": _peak_mb(),
        "imports_s": started - before,
    }


def _run_child(
    kind: str, data_dir: Path, start: date, end: date, workdir: Path, profile: bool
) -> dict[str, Any] | None:
    command = [
        sys.executable, __file__, "--child", kind, "--data-dir", str(data_dir), "--start", start.isoformat(),
        "--end", end.isoformat(), "--db", str(workdir / f"{kind}-{time.monotonic_ns()}.db"),
    ] + (["--profile"] if profile else [])  # fmt: skip
    wall0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - wall0
    if done.returncode != 0:
        if kind == "backtrader" and "No module named 'backtrader'" in done.stderr:
            print("  backtrader   skipped: not installed (dev-only: pip install backtrader==1.9.78.123)")
            return None
        raise SystemExit(f"{kind} child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    profile_text = result.pop("profile", None)
    print(
        f"  {kind:<12} {result['bars']:>9,} bars  elapsed {result['elapsed_s']:8.2f}s (CPU {result['cpu_s']:.2f}s)"
        f" -> {result['bars'] / result['elapsed_s']:>9,.0f} bars/s"
        f"  | process {wall:7.2f}s (imports {result.get('imports_s', 0):.2f}s)  peak RSS {result['peak_mb']:7.1f} MB"
        f"  | final equity {result['final_equity']:,.2f}, {result['trades']} entries"
    )
    timings = result.get("timings") or {}
    if timings:
        sessions = result.get("iterations") or 1
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
        print(f"  {'':<12} phases: {phases} ({timings.get('sessions', 0) / sessions * 1e6:,.0f} µs per session)")
    if profile_text:
        per = result.get("iterations") or 1
        print(
            f"  --- cProfile of the {kind} child ({per} iterations; divide cumulative seconds by it for per-iteration cost)"
        )
        print("\n".join("    " + line for line in profile_text.splitlines() if line.strip()))
    return result


def prime_caches(data_dir: Path, workdir: Path) -> float:
    """Fill the backtest's caches (the parsed bar files, the exchange schedule and the database's schema template
    under ``workdir/cache``, the children's ``BAR_CACHE_DIR``) as an earlier run over the same files would have;
    returns the seconds it took."""
    from core.backtest.runner import BAR_FILE_CACHE, CALENDAR_CACHE, _FAR_FUTURE
    from core.data.cache import BarFileCache
    from core.data.files import FileProvider
    from core.kernel.calendar import MarketCalendar
    from core.persistence.db import schema_cache_dir, schema_template

    started = time.perf_counter()
    provider = FileProvider(data_dir, cache=BarFileCache(workdir / "cache" / BAR_FILE_CACHE))
    symbols = sorted({p.stem.upper() for p in data_dir.iterdir()})
    frames = provider.history(symbols, end=_FAR_FUTURE).frames
    first = min(f.index[0] for f in frames.values()).date()
    MarketCalendar.covering(first, cache_dir=workdir / "cache" / CALENDAR_CACHE)
    schema_template(schema_cache_dir(workdir / "cache"))
    return time.perf_counter() - started


def _bench(
    name: str, data_dir: Path, start: date, end: date, workdir: Path, profile: bool, skip_default: bool, cold: bool
) -> dict[str, dict[str, Any] | None]:
    print(f"{name}: {len(list(data_dir.iterdir()))} symbols, {start} .. {end}")
    if cold:
        print(
            "  caches: cold (each pipeline run parses the bar files, builds the calendar and schema; the first fills them)"
        )
    else:
        seconds = prime_caches(data_dir, workdir)
        print(f"  caches: warm, as for a repeated backtest (bar files, calendar, schema cached first, {seconds:.2f}s)")
    runs: dict[str, dict[str, Any] | None] = {}
    kinds = ["pipeline-sma", "backtrader"] if skip_default else ["pipeline", "pipeline-sma", "backtrader"]
    for kind in kinds:
        runs[kind] = _run_child(kind, data_dir, start, end, workdir, profile and kind == "pipeline")
    bt = runs.get("backtrader")
    sma = runs.get("pipeline-sma")
    if bt is not None and sma is not None:
        same = round(sma["final_equity"], 2) == round(bt["final_equity"], 2) and sma["trades"] == bt["trades"]
        print(f"  pipeline-sma and backtrader agree (entries, final equity to the cent): {'yes' if same else 'NO'} "
              f"(difference {sma['final_equity'] - bt['final_equity']:+.4f}, {sma['trades'] - bt['trades']:+d} entries)")  # fmt: skip
        if sma["trades"] != bt["trades"] and sma.get("rejected_bars"):
            print(f"    the pipeline's Data agent excluded {sma['rejected_bars']:,} symbol-sessions (history shorter than "
                  "min_history, or a validation rule such as a missing session in the look-back window): backtrader "
                  "trades through them, so a difference is expected there")  # fmt: skip
    if bt is not None:
        for kind in kinds[:-1]:
            run = runs[kind]
            assert run is not None
            ratio = run["elapsed_s"] / bt["elapsed_s"]
            print(f"  {kind} vs backtrader: {ratio:.1f}x backtrader's time ({bt['elapsed_s']:.2f}s), "
                  f"process {run['process_s'] / bt['process_s']:.1f}x")  # fmt: skip
    if sma is not None:
        _floor(sma, bt, data_dir, start, end, workdir)
    return runs


def targets(measured: dict[str, dict[str, dict[str, Any] | None]]) -> list[str]:
    """One line per target of the issue: the measured speed-up over backtrader (its ``elapsed_s`` / the run's) and
    PASS or MISS; ``not run`` when the data set or backtrader was skipped."""
    lines = []
    for data_set, kind, minimum, label in TARGETS:
        runs = measured.get(data_set) or {}
        run, bt = runs.get(kind), runs.get("backtrader")
        if run is None or bt is None:
            lines.append(f"  {label}: not run")
            continue
        ratio = bt["elapsed_s"] / run["elapsed_s"]
        cpu_ratio = bt["cpu_s"] / run["cpu_s"]
        ok = ratio >= minimum and (data_set != "synthetic" or run["peak_mb"] < PEAK_LIMIT_MB)
        memory = f", peak {run['peak_mb']:.0f} MB" if data_set == "synthetic" else ""
        lines.append(
            f"  {label}: {ratio:.2f}x ({run['elapsed_s']:.2f}s against {bt['elapsed_s']:.2f}s; CPU {cpu_ratio:.2f}x; whole process "
            f"{run['process_s']:.2f}s against {bt['process_s']:.2f}s{memory}) {'PASS' if ok else 'MISS'}"
        )
    return lines


def _floor(
    sma: dict[str, Any], bt: dict[str, Any] | None, data_dir: Path, start: date, end: date, workdir: Path
) -> None:
    """What the pipeline costs before its agents do any work, beside the 10x-backtrader budget."""
    sessions = sma.get("iterations") or 0
    command = [sys.executable, __file__, "--child", "bus-floor", "--sessions", str(sessions), "--data-dir", str(data_dir),
               "--start", start.isoformat(), "--end", end.isoformat(), "--db", str(workdir / "unused.db")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    bus = json.loads(done.stdout.strip().splitlines()[-1])
    timings = sma.get("timings") or {}
    fixed = sum(v for k, v in timings.items() if k != "sessions")
    print(
        f"  bus alone (8 subscriptions, pass-through handlers, async): {bus['per_session_us']:.0f} µs per session, "
        f"{bus['elapsed_s']:.3f}s for {sessions:,} sessions"
    )
    if bt is not None and timings:
        budget = bt["elapsed_s"] / 10
        floor = fixed + bus["elapsed_s"]
        per_bar = (budget - floor) / sma["bars"] * 1e6
        print(
            f"  10x backtrader = {budget:.3f}s; pipeline-sma outside its sessions (load, setup, results) {fixed:.3f}s "
            f"+ bus alone {bus['elapsed_s']:.3f}s = {floor:.3f}s before any agent works"
            + (f": {per_bar:.2f} µs per bar left for all six agents" if per_bar > 0 else ": over the budget already")
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["universe", "synthetic"], help="run one data set only")
    parser.add_argument("--universe-symbols", type=int, default=20)
    parser.add_argument("--synthetic-symbols", type=int, default=500)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--profile", action="store_true", help="cProfile the default pipeline run")
    parser.add_argument("--sma-only", action="store_true", help="skip the default pipeline configuration")
    parser.add_argument(
        "--cold", action="store_true", help="do not fill the bar-file and calendar caches before the pipeline runs"
    )
    parser.add_argument(
        "--child", choices=["pipeline", "pipeline-sma", "backtrader", "bus-floor"], help=argparse.SUPPRESS
    )
    parser.add_argument("--sessions", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--start", help=argparse.SUPPRESS)
    parser.add_argument("--end", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        children = {"backtrader": _child_backtrader, "bus-floor": _child_bus_floor}
        result = children.get(args.child, _child_pipeline)(args)
        result["interpreter_s"] = time.perf_counter() - _STARTED  # since this script's first line
        print(json.dumps(result))
        return 0
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    measured: dict[str, dict[str, dict[str, Any] | None]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
        work = Path(tmp)
        if args.only in (None, "universe"):
            if UNIVERSE_STOCKS.is_dir():
                data, start, end = universe_dir(work / "universe", args.universe_symbols, args.years)
                measured["universe"] = _bench(
                    "universe", data, start, end, work, args.profile, args.sma_only, args.cold
                )
            else:
                print(f"universe: skipped, {UNIVERSE_STOCKS} not found")
        if args.only in (None, "synthetic"):
            t0 = time.perf_counter()
            data, start, end = synthetic_dir(work / "synthetic", args.synthetic_symbols, args.years)
            print(f"(synthetic data written in {time.perf_counter() - t0:.1f}s)")
            measured["synthetic"] = _bench("synthetic", data, start, end, work, args.profile, args.sma_only, args.cold)
    print("targets (speed-up = backtrader's elapsed_s / the run's elapsed_s, both after imports):")
    print("\n".join(targets(measured)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
