"""Crash loop: ``main.py run --once`` against the local Alpaca fake, SIGKILLed again and again at random points
(a named failpoint, or an outside SIGKILL after a random delay), with the market filling orders and lost answers
(POST accepted then 500, lookup 500) between runs; then clean runs, and a count of duplicates and lost orders.

    python -m tests.e2e.crash_loop --kills 30 [--seed 7]

Needs Alpaca's official specs in ../shared (the fake checks every reply against them). Prints one line per run and
a JSON summary; exits 1 if anything was duplicated or lost.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from core.persistence.models import FillRow, OrderIntentRow, OrderRow, ReconciliationRow
from tests.conftest import REPO_ROOT
from tests.e2e.helpers import DAEMON_ONCE, alpaca_specs_present, daemon_env, start_fake_alpaca
from tests.fakes.alpaca_server import FakeAlpacaServer, server_error
from tests.fakes.alpaca_trading import ORDER_BY_CLIENT_ID_PATH, FakeTradingApi

SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
FAILPOINTS = ("after_catch_up", "before_submit", "after_submit", "after_persist")


def _env(server: FakeAlpacaServer, work: Path, strategy: str, failpoint: str | None) -> dict[str, str]:
    return daemon_env(
        server, work, "loop.db", symbols=SYMBOLS, strategy=strategy, failpoint=failpoint, log_level="WARNING"
    )


def _run(env: dict[str, str], kill_after: float | None) -> int:
    proc = subprocess.Popen(
        DAEMON_ONCE, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=180)
    if proc.returncode not in (0, -9):
        print(err[-2000:], file=sys.stderr)
    return proc.returncode


def _market(trading: FakeTradingApi, closes: dict[str, float], rng: random.Random) -> list[str]:
    """Fill some working, active orders at plausible prices (entries at the close, legs at their level)."""
    done = []
    for order in trading.orders():
        if not order.working or not order.active or rng.random() < 0.2:
            continue
        if order.type == "limit" and order.limit_price is not None:
            price = order.limit_price
        elif order.stop_price is not None:
            price = order.stop_price
        else:
            price = Decimal(str(closes[order.symbol])) * Decimal(rng.choice(["0.97", "1", "1.04"]))
        price = price.quantize(Decimal("0.01"))
        if order.side == "sell" and trading.positions().get(order.symbol, (Decimal(0), 0))[0] < order.remaining:
            continue
        try:
            trading.fill(order.id, price)
            done.append(f"{order.client_order_id[:22]}@{price}")
        except ValueError:
            continue  # cancelled with its sibling in the meantime
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if not alpaca_specs_present():
        print("needs Alpaca's official specs in ../shared", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="crash-loop-"))
    server, trading, closes = start_fake_alpaca(SYMBOLS)
    try:
        kills = clean = runs = 0
        landed: dict[str, int] = {}
        while kills < args.kills:
            runs += 1
            strategy = rng.choice(["volatility_breakout", "mean_reversion"])
            how = rng.choice(FAILPOINTS + ("random", "random", "random"))
            if rng.random() < 0.25:
                trading.accept_then(server_error(500))
                trading.fail_next("GET", ORDER_BY_CLIENT_ID_PATH, 500)
            started = time.monotonic()
            code = _run(
                _env(server, work, strategy, None if how == "random" else how),
                rng.uniform(2.0, 9.0) if how == "random" else None,
            )
            if code == -9:
                kills += 1
                landed[how] = landed.get(how, 0) + 1
            elif code == 0:
                clean += 1
            else:
                print(f"run {runs}: exit {code}", file=sys.stderr)
                return 1
            filled = _market(trading, closes, rng)
            print(
                f"run {runs:3d}: {strategy:20s} {how:15s} exit {code:3d} ({time.monotonic() - started:4.1f}s); market filled {len(filled)}"
            )
        for _ in range(2):  # clean runs settle everything
            assert _run(_env(server, work, "volatility_breakout", None), None) == 0

        engine = create_engine(f"sqlite:///{work / 'loop.db'}")
        fake = {o.client_order_id: o for o in trading.orders()}
        with Session(engine) as s:
            rows = {o.client_order_id: o for o in s.scalars(select(OrderRow))}
            fills = s.scalars(select(FillRow)).all()
            intents = {i.client_order_id: i.status for i in s.scalars(select(OrderIntentRow))}
            discrepancies = [(r.kind, r.symbol, r.details) for r in s.scalars(select(ReconciliationRow))]
        filled_by_order: dict[str, Decimal] = {}
        for f in fills:
            filled_by_order[f.client_order_id] = filled_by_order.get(f.client_order_id, Decimal(0)) + f.quantity
        duplicates = sum(trading.count_with_client_id(cid) - 1 for cid in fake) + (
            len(fills) - len({f.fill_id for f in fills})
        )
        top = [o for o in fake.values() if o.parent_id is None]
        duplicates += len(top) - len({(o.symbol, o.side, o.submitted_at.date()) for o in top})
        lost_orders = sorted(cid for cid in fake if cid not in rows)
        lost_fills = sorted(cid for cid, o in fake.items() if filled_by_order.get(cid, Decimal(0)) != o.filled_qty)
        held: dict[str, Decimal] = {}
        for f in fills:
            held[f.symbol] = held.get(f.symbol, Decimal(0)) + (f.quantity if f.side == "buy" else -f.quantity)
        positions_match = {k: v for k, v in held.items() if v} == {
            k: q for k, (q, _) in trading.positions().items() if q
        }
        summary = {
            "runs": runs + 2,
            "kills": kills,
            "kills_by_point": landed,
            "clean_runs_between": clean,
            "orders_at_broker": len(fake),
            "orders_in_ledger": len(rows),
            "fills_in_ledger": len(fills),
            "duplicates": duplicates,
            "lost_orders": lost_orders,
            "orders_with_fills_lost_or_doubled": lost_fills,
            "ledger_positions_equal_broker": positions_match,
            "intents": {st: sum(1 for v in intents.values() if v == st) for st in sorted(set(intents.values()))},
            "reconciliation_discrepancies": discrepancies,
        }
        print(json.dumps(summary, indent=2, default=str))
        ok = not duplicates and not lost_orders and not lost_fills and positions_match
        return 0 if ok else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
