#!/usr/bin/env python3
"""Fingerprint of a run's ledger: per table, the row count and a hash of every row, to check that a change of code
leaves a backtest's records identical.

    python scripts/ledger_fingerprint.py sqlite:///before.db [--run RUN_ID]
    python scripts/ledger_fingerprint.py after.db --compare before.json

Reads one run (the only one in the database unless ``--run``) from a SQLite file or URL and prints a JSON object:
for each ledger table, ``"<rows>:<sha256 prefix>"`` over its rows in id order, with the run id replaced by ``RUN``
(it is new on every run) and the columns written with the wall-clock time left out. ``--compare FILE`` reads an
earlier output and exits 1 naming the tables that differ. Typical use: run the same ``main.py backtest --db ...``
before and after a change, fingerprint both databases and compare (equal hashes: every decision, order, fill,
equity snapshot, report, shadow-ledger matrix and state row is the same, float for float).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import sys
from pathlib import Path

TABLES = (
    "iterations",
    "decisions",
    "orders",
    "fills",
    "equity_snapshots",
    "audit_reports",
    "breaker_events",
    "positions",
    "shadow_signals",
    "shadow_matrices",
    "llm_calls",
    "order_intents",
    "reconciliation_events",
    "daemon_state",
    "notifications",
)
# columns written with the wall-clock time, not the simulated one
WALL_CLOCK = {
    "iterations": {"recorded_at"},
    "daemon_state": {"updated_at"},
    "notifications": {"created_at", "attempted_at", "delivered_at"},
}


def _path(database: str) -> Path:
    if database.startswith("sqlite:///"):
        return Path(database.removeprefix("sqlite:///"))
    if "://" in database:
        raise SystemExit(f"error: only SQLite databases are read here, got {database.split('://')[0]}://...")
    return Path(database)


def fingerprint(database: Path, run_id: str | None = None) -> dict[str, str]:
    if not database.is_file():
        raise SystemExit(f"error: no database file at {database}")
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as con:
        runs = [r[0] for r in con.execute("SELECT id FROM runs ORDER BY started_at")]
        if run_id is None:
            if len(runs) != 1:
                raise SystemExit(f"error: {len(runs)} runs in {database}; name one with --run")
            run_id = runs[0]
        elif run_id not in runs:
            raise SystemExit(f"error: no run {run_id!r} in {database}")
        present = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        out: dict[str, str] = {}
        for table in TABLES:
            if table not in present:
                continue
            columns = [c[1] for c in con.execute(f"PRAGMA table_info('{table}')")]
            keep = [c for c in columns if c != "id" and c not in WALL_CLOCK.get(table, ())]
            where = " WHERE run_id = ?" if "run_id" in columns else ""
            order = "id" if "id" in columns else ", ".join(keep)
            rows = con.execute(
                f"SELECT {', '.join(keep)} FROM {table}{where} ORDER BY {order}", (run_id,) if where else ()
            )
            digest = hashlib.sha256()
            count = 0
            for row in rows:
                values = tuple(v.replace(run_id, "RUN") if isinstance(v, str) else v for v in row)
                digest.update(repr(values).encode())
                count += 1
            out[table] = f"{count}:{digest.hexdigest()[:16]}"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", help="SQLite file or sqlite:/// URL")
    parser.add_argument("--run", help="run id (default: the database's only run)")
    parser.add_argument("--compare", type=Path, help="an earlier output to compare with: exit 1 when they differ")
    args = parser.parse_args(argv)
    printed = fingerprint(_path(args.database), args.run)
    print(json.dumps(printed, indent=1, sort_keys=True))
    if args.compare is not None:
        earlier = json.loads(args.compare.read_text())
        differing = sorted(t for t in set(earlier) | set(printed) if earlier.get(t) != printed.get(t))
        if differing:
            print(f"differs: {', '.join(differing)}", file=sys.stderr)
            return 1
        print("identical", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
