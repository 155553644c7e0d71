"""Benchmark: validate 500 symbols x 300 daily bars (target < 100 ms), plus related data-layer figures.

Validation reads each symbol's whole visible history; the Data agent's per-iteration cost is FrameChecks' fast path
(built once per frame, then a few array reads per symbol and iteration), measured below on 500 ten-year frames.

Run: .venv/bin/python scripts/bench_validation.py
Prints figures only; nothing here is asserted (timings belong in benchmarks, not in the unit suite).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from core.kernel.calendar import MarketCalendar  # noqa: E402  (after the sys.path line above)
from core.data.files import FileProvider  # noqa: E402  (after the sys.path line above)
from core.data.synthetic import generate_bars  # noqa: E402  (after the sys.path line above)
from core.data.validation import FrameChecks, latest_session_day, validate_batch  # noqa: E402  (after the sys.path line above)

SYMBOLS = 500
BARS = 300
TARGET_MS = 100.0


def timed(label: str, action: Callable[[], object], repeats: int) -> list[float]:
    action()  # warm-up
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000.0)
    print(
        f"{label:<58} min {min(samples):8.2f} ms   median {statistics.median(samples):8.2f} ms   "
        f"max {max(samples):8.2f} ms   ({repeats} runs)"
    )
    return samples


def main() -> None:
    started = time.perf_counter()
    calendar = MarketCalendar()
    print(f"MarketCalendar() construction: {(time.perf_counter() - started) * 1000:.1f} ms (build once, reuse)")

    decade = calendar.sessions_index(date(2010, 1, 1), date(2019, 12, 31))
    started = time.perf_counter()
    long_frames = {f"S{i:03d}": generate_bars(f"S{i:03d}", decade, seed=7) for i in range(SYMBOLS)}
    print(f"generate_bars: {SYMBOLS} symbols x {len(decade)} sessions in {time.perf_counter() - started:.3f} s")

    short_frames = {symbol: frame.iloc[-BARS:] for symbol, frame in long_frames.items()}
    as_of = datetime(2020, 1, 2, 12, 0, tzinfo=UTC)  # before the open: the latest completed session is 2019-12-31

    result = validate_batch(short_frames, as_of=as_of, min_history=200, calendar=calendar)
    if result.quality != 1.0:
        raise SystemExit(f"benchmark data failed validation: {dict(list(result.rejected.items())[:3])}")

    samples = timed(
        f"validate_batch {SYMBOLS} x {BARS} bars (calendar rules on)",
        lambda: validate_batch(short_frames, as_of=as_of, min_history=200, calendar=calendar),
        repeats=30,
    )
    timed(
        f"validate_batch {SYMBOLS} x {len(decade)} bars (whole history)",
        lambda: validate_batch(long_frames, as_of=as_of, min_history=200, calendar=calendar),
        repeats=30,
    )
    timed(
        f"validate_batch {SYMBOLS} x {BARS} bars (no calendar)",
        lambda: validate_batch(short_frames, as_of=as_of, min_history=200, calendar=None),
        repeats=30,
    )
    started = time.perf_counter()
    checks = {symbol: FrameChecks.of(frame, calendar) for symbol, frame in long_frames.items()}
    print(
        f"FrameChecks.of: {SYMBOLS} frames x {len(decade)} bars in {(time.perf_counter() - started) * 1000:.1f} ms (once per frame)"
    )
    latest = latest_session_day(as_of, calendar)
    ends = {symbol: len(frame) for symbol, frame in long_frames.items()}

    def fast_path() -> None:
        for symbol, check in checks.items():
            assert check is not None and check.clean(ends[symbol], min_history=200, latest_session_day=latest)

    timed(f"FrameChecks.clean, {SYMBOLS} symbols (one iteration's fast path)", fast_path, repeats=30)
    verdict = "meets" if statistics.median(samples) < TARGET_MS else "MISSES"
    print(f"-> median {statistics.median(samples):.2f} ms {verdict} the {TARGET_MS:.0f} ms target")

    for candidate in (REPO_ROOT / "data" / "daily", REPO_ROOT.parent / "shared" / "data" / "daily"):
        if candidate.is_dir():
            provider = FileProvider(candidate)
            symbols = sorted(p.stem for p in candidate.glob("*.csv"))
            end = datetime(2021, 4, 1, tzinfo=UTC)
            started = time.perf_counter()
            provider.history(symbols, end)
            print(
                f"FileProvider first call ({len(symbols)} CSV files parsed): {(time.perf_counter() - started) * 1000:.1f} ms"
            )
            repeats = 2000
            started = time.perf_counter()
            for _ in range(repeats):
                provider.history(symbols, end)
            per_call = (time.perf_counter() - started) / repeats * 1e6
            print(f"FileProvider repeated call ({len(symbols)} symbols, cached): {per_call:.1f} us per call")
            break
    else:
        print("FileProvider figures skipped: no data/daily or ../shared/data/daily directory")


if __name__ == "__main__":
    main()
