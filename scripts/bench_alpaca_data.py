"""Benchmark AlpacaBarProvider against the local fake Alpaca server: a cold, a warm and a next-session iteration.

    .venv/bin/python scripts/bench_alpaca_data.py [--symbols 50] [--days 300] [--cache disk|memory] [--validate]

- cold: empty cache, every symbol's ~``days`` daily bars fetched in one batched request (the SDK follows the pages);
- warm: same ``end``, cache current: no request at all;
- next session: the server gains one session and ``end`` moves a day: one request, only from the last cached day.

Everything runs on 127.0.0.1 through the real alpaca-py client. ``--validate`` also checks every fake reply against
Alpaca's official OpenAPI spec (slower: the time then includes the fake's schema validation).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pandas as pd  # noqa: E402

from core.data.alpaca import AlpacaBarProvider  # noqa: E402
from tests.fakes.alpaca_server import (  # noqa: E402
    BARS_PATH,
    MARKET_DATA_SPEC_PATH,
    FakeAlpacaServer,
    OpenApiSpec,
    StockBarsEndpoint,
    synthetic_daily_bars,
    weekday_sessions,
)
from utils.rate_limiter import SlidingWindowRateLimiter  # noqa: E402

API_KEY = "PKBENCHMARKKEY000000"
SECRET_KEY = "benchmark-secret-0000000000000000000000"


class MemoryCache:
    """Dict-backed cache with the provider's BarCache methods."""

    def __init__(self) -> None:
        self._frames: dict[str, pd.DataFrame] = {}

    def load(self, symbol: str) -> pd.DataFrame | None:
        return self._frames.get(symbol)

    def last_timestamp(self, symbol: str) -> pd.Timestamp | None:
        frame = self._frames.get(symbol)
        return None if frame is None or frame.empty else frame.index[-1]

    def merge(self, symbol: str, frame: pd.DataFrame) -> pd.DataFrame:
        cached = self._frames.get(symbol)
        combined = frame if cached is None else pd.concat([cached, frame])
        merged = combined[~combined.index.duplicated(keep="last")].sort_index()
        self._frames[symbol] = merged
        return merged


def make_cache(kind: str, directory: Path) -> tuple[object, str]:
    if kind == "memory":
        return MemoryCache(), "in-memory dict"
    from core.data.cache import DiskBarCache

    return DiskBarCache(directory), f"DiskBarCache({directory})"


def symbols_for(count: int) -> list[str]:
    return [f"S{i:03d}" for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=300, help="trading sessions per symbol")
    parser.add_argument("--cache", choices=("disk", "memory"), default="disk")
    parser.add_argument("--page-size", type=int, default=10_000, help="largest page the fake serves (API: 10000)")
    parser.add_argument("--validate", action="store_true", help="check every reply against the official spec")
    args = parser.parse_args(argv)

    from loguru import logger

    logger.remove()  # keep the output to the figures
    logger.add(sys.stderr, level="WARNING")

    last = date(2024, 3, 29)
    sessions = weekday_sessions(last - timedelta(days=args.days * 2), last)[-args.days :]
    symbols = symbols_for(args.symbols)
    spec = OpenApiSpec.load(MARKET_DATA_SPEC_PATH) if args.validate else None

    with FakeAlpacaServer(api_key=API_KEY, secret_key=SECRET_KEY) as server, tempfile.TemporaryDirectory() as tmp:
        endpoint = StockBarsEndpoint.install(server, spec, max_page_size=args.page_size)
        for symbol in symbols:
            endpoint.add_bars(symbol, synthetic_daily_bars(symbol, sessions[0], sessions[-1], sessions=sessions))
        cache, cache_label = make_cache(args.cache, Path(tmp) / "bars")
        provider = AlpacaBarProvider(
            API_KEY,
            SECRET_KEY,
            url_override=server.base_url,
            limiter=SlidingWindowRateLimiter(200, 60.0),
            cache=cache,  # type: ignore[arg-type]
            timeout_s=30.0,
        )
        start = datetime.combine(sessions[0], datetime.min.time(), tzinfo=UTC)
        end = datetime.combine(sessions[-1], datetime.min.time(), tzinfo=UTC) + timedelta(hours=22)
        next_day = last + timedelta(days=3)  # Monday 2024-04-01

        print(
            f"{args.symbols} symbols x {len(sessions)} sessions ({sessions[0]}..{sessions[-1]}), cache: {cache_label}"
        )
        print(f"fake server {server.base_url}, page size {args.page_size}, spec validation {'on' if spec else 'off'}")
        print(f"{'iteration':<14}{'elapsed ms':>12}{'bars requests':>15}{'symbols':>9}{'errors':>8}{'bars':>9}")
        rows = []
        for label in ("cold", "warm", "next session"):
            if label == "next session":
                for symbol in symbols:
                    endpoint.add_bars(symbol, synthetic_daily_bars(symbol, next_day, next_day))
                end = datetime.combine(next_day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=22)
            before = len(server.requests_to("GET", BARS_PATH))
            began = time.perf_counter()
            result = provider.history(symbols, end, start)
            elapsed_ms = (time.perf_counter() - began) * 1000
            made = len(server.requests_to("GET", BARS_PATH)) - before
            bars = sum(len(frame) for frame in result.frames.values())
            rows.append((label, elapsed_ms, made, len(result.frames), len(result.errors), bars))
            print(f"{label:<14}{elapsed_ms:>12.1f}{made:>15}{len(result.frames):>9}{len(result.errors):>8}{bars:>9}")
        provider.close()
        server.assert_clean()

    warm_requests = rows[1][2]
    next_requests = rows[2][2]
    ok = warm_requests <= 1 and next_requests <= 1 and all(row[4] == 0 for row in rows)
    print(f"target (at most one bars request per warm iteration, no errors): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
