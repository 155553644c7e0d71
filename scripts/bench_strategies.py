"""Benchmark: compute every registered strategy for a synthetic universe and print the timings.

    .venv/bin/python scripts/bench_strategies.py [--symbols 500] [--bars 300] [--repeat 5] [--seed 7]

Bars are a seeded geometric random walk (OHLCV, UTC session dates); peers are the first symbol as benchmark and
the whole universe's closes, as the Strategy agent would pass them.  Each strategy is computed once per symbol via
the public ``Strategy.compute``; the figures are the best of ``--repeat`` runs (after one warm-up run), as wall-clock and process CPU
time (the CPU figure is the useful one on a shared, busy machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from strategies.base import Peers  # noqa: E402
from strategies.registry import build_registry  # noqa: E402


def synthetic_universe(symbols: int, bars: int, seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2019-01-02", periods=bars, tz="UTC", name="timestamp")
    frames: dict[str, pd.DataFrame] = {}
    for k in range(symbols):
        drift = rng.normal(0.0003, 0.0004)
        vol = rng.uniform(0.008, 0.035)
        log_close = np.log(rng.uniform(10.0, 500.0)) + np.cumsum(rng.normal(drift, vol, bars))
        close = np.exp(log_close)
        open_ = close * np.exp(rng.normal(0.0, vol / 3.0, bars))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, vol / 2.0, bars)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, vol / 2.0, bars)))
        volume = rng.lognormal(13.0, 0.4, bars).round()
        frames[f"S{k:04d}"] = pd.DataFrame(
            {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
            index=dates.copy(),  # every symbol's frame owns its index, as provider frames do
        )
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    frames = synthetic_universe(args.symbols, args.bars, args.seed)
    benchmark = next(iter(frames.values()))
    closes = pd.DataFrame({symbol: frame["close"] for symbol, frame in frames.items()})
    peers = Peers(benchmark=benchmark, closes=closes)
    registry = build_registry()

    def run_once() -> dict[str, tuple[float, float]]:
        timings: dict[str, tuple[float, float]] = {}
        for name, strategy in registry.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for frame in frames.values():
                strategy.compute(frame, peers)
            timings[name] = (time.perf_counter() - wall, time.process_time() - cpu)
        return timings

    run_once()  # warm-up: imports, first-call caches (the universe momentum is rebuilt below: fresh registry)
    runs = []
    for _ in range(max(1, args.repeat)):
        registry = build_registry()  # fresh instances: each run pays for its universe ranking once
        runs.append(run_once())
    walls = [sum(w for w, _ in run.values()) for run in runs]
    cpus = [sum(c for _, c in run.values()) for run in runs]
    best = runs[int(np.argmin(walls))]

    calls = args.symbols
    print(
        f"{args.symbols} symbols x {args.bars} bars, {len(registry)} strategies, "
        f"{args.symbols * len(registry)} compute() calls per run, best of {len(runs)} runs"
    )
    print(f"{'strategy':26s} {'wall ms':>9s} {'cpu ms':>9s} {'us/symbol':>10s}")
    for name, (wall, cpu) in best.items():
        print(f"{name:26s} {wall * 1e3:9.1f} {cpu * 1e3:9.1f} {wall / calls * 1e6:10.1f}")
    total_wall, total_cpu = min(walls), cpus[int(np.argmin(walls))]
    per_call = total_wall / (calls * len(registry)) * 1e6
    print(f"{'TOTAL (best run)':26s} {total_wall * 1e3:9.1f} {total_cpu * 1e3:9.1f} {per_call:10.1f} per call")
    print(f"wall per run (s): {', '.join(f'{t:.3f}' for t in walls)}")
    print(f"cpu per run (s):  {', '.join(f'{t:.3f}' for t in cpus)}")
    # Selection with the LLM off: the market context of every symbol (computed once per frame, as the agent caches it)
    # and one deterministic choice per symbol per iteration.
    from strategies.context import context_at, context_frame
    from strategies.selector import DeterministicSelector

    selector = DeterministicSelector(registry)
    t0 = time.perf_counter()
    contexts_frames = {symbol: context_frame(frame) for symbol, frame in frames.items()}
    context_s = time.perf_counter() - t0
    contexts = {symbol: context_at(symbol, frame, len(frame) - 1) for symbol, frame in frames.items()}
    t0 = time.perf_counter()
    for _symbol, context in contexts.items():
        selector.choose(context, args.bars, benchmark_available=True, universe_available=True)
    choose_s = time.perf_counter() - t0
    print(
        f"selection, LLM off: context frames {context_s * 1e3:.1f} ms once per frame; "
        f"choose() for {len(contexts)} symbols {choose_s * 1e3:.2f} ms per iteration ({choose_s / len(contexts) * 1e6:.1f} us/symbol)"
    )
    del contexts_frames
    if hasattr(os, "getloadavg"):
        print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
