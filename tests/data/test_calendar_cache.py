"""The exchange schedule kept on disk: a later process reads it instead of building the exchange calendar, and gets
the same sessions, opens, closes and early closes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

_DESCRIBE = """
import json, sys
from datetime import date
sys.path.insert(0, {root!r})
import exchange_calendars
if {forbid_build}:
    def refuse(*args, **kwargs):
        raise AssertionError("the exchange calendar was built although its schedule is cached")
    exchange_calendars.get_calendar = refuse
from core.kernel.calendar import MarketCalendar
calendar = MarketCalendar(start=date(1995, 3, 1), end=date(2031, 6, 30), cache_dir={cache!r})
sessions = calendar.sessions_between(date(1995, 3, 1), date(2031, 6, 30))
print(json.dumps({{
    "sessions": [d.isoformat() for d in sessions],
    "closes": [calendar.session(d).close_utc.isoformat() for d in sessions],
    "opens": [calendar.session(d).open_utc.isoformat() for d in sessions],
}}))
"""


def _describe(cache: Path | None, *, forbid_build: bool) -> dict[str, list[str]]:
    code = _DESCRIBE.format(root=str(REPO_ROOT), cache=str(cache) if cache else None, forbid_build=forbid_build)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_reads_the_cached_schedule_and_gets_the_same_calendar(tmp_path: Path) -> None:
    built = _describe(None, forbid_build=False)
    first = _describe(tmp_path / "calendars", forbid_build=False)  # builds and stores
    assert len(list((tmp_path / "calendars").glob("XNYS-1995-03-01-2031-06-30-*.npz"))) == 1
    cached = _describe(tmp_path / "calendars", forbid_build=True)  # must not build
    assert first == built
    assert cached == built


def test_an_unreadable_cache_file_is_rebuilt(tmp_path: Path) -> None:
    _describe(tmp_path, forbid_build=False)
    (stored,) = tmp_path.glob("*.npz")
    stored.write_bytes(b"broken")
    assert _describe(tmp_path, forbid_build=False) == _describe(None, forbid_build=False)
    assert _describe(tmp_path, forbid_build=True)["sessions"]  # rewritten: readable again
