"""The daemon's schedule and health verdict, shared by ``main.py health``/``status`` and the dashboard."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from collections.abc import Callable, Mapping

from config.settings import PROJECT_ROOT, Schedule, Settings
from core.kernel.calendar import MarketCalendar, format_eastern
from core.persistence.models import Iteration
from core.persistence.repository import Repository
from core.vocabulary import StateKey
from utils.cli import db_argument, interpreter_command


def schedule_for(settings: Settings, calendar: MarketCalendar) -> Callable[[datetime], datetime]:
    """When the daemon's next iteration runs after ``now``: once per NYSE session at open + offset, or every interval."""
    if settings.schedule is Schedule.INTERVAL:
        interval = timedelta(seconds=settings.loop_interval_seconds)
        return lambda now: now + interval
    offset = timedelta(minutes=settings.run_at_minutes_after_open)
    return lambda now: calendar.next_run_time(now, offset)


def health_report(
    settings: Settings, repository: Repository, calendar: MarketCalendar, now: datetime
) -> dict[str, object]:
    """Healthy when the daemon's last heartbeat is not older than its next scheduled run plus the grace period,
    its last iteration had usable data (data quality at least ``DATA_QUALITY_MIN``, at least one symbol) and completed
    ``ok``, and trading is not HALTED."""
    problems: list[str] = []
    beat = repository.get_state(StateKey.HEARTBEAT)
    report: dict[str, object] = {"at": now.isoformat()}
    if beat is None:
        problems.append("no heartbeat: the daemon has not completed an iteration on this database")
    else:
        value = beat[0]
        last = datetime.fromisoformat(str(value["at"]))
        due = schedule_for(settings, calendar)(last)
        deadline = due + timedelta(minutes=settings.health_grace_minutes)
        report.update(
            last_heartbeat=last.isoformat(),
            last_iteration=value.get("iteration_id"),
            last_status=value.get("status"),
            next_due=due.isoformat(),
            stale_after=deadline.isoformat(),
        )
        if now > deadline:
            problems.append(f"stale: last iteration {format_eastern(last)}, the next was due {format_eastern(due)}")
        problems.extend(_last_iteration_problems(settings, repository, value, report))
    risk = repository.get_state(StateKey.RISK_STATE)
    state = str(risk[0].get("state")) if risk is not None else "unknown"
    report["trading_state"] = state
    if risk is not None:
        report["trading_state_reason"] = risk[0].get("reason")
    if state == "halted":
        reset = (
            interpreter_command(PROJECT_ROOT / "main.py")
            + " reset --reason '...'"
            + db_argument(settings.database_url, Settings.model_fields["database_url"].default)
        )
        problems.append(f"halted: {risk[0].get('reason') if risk else ''} (reset with `{reset}`)")
    report["healthy"] = not problems
    report["problems"] = problems
    return report


def _last_iteration_problems(
    settings: Settings, repository: Repository, beat: Mapping[str, Any], report: dict[str, object]
) -> list[str]:
    """What was wrong with the heartbeat's iteration: not ok, no usable data, data quality under the threshold."""
    problems: list[str] = []
    status = beat.get("status")
    with repository.session() as session:
        row = session.get(Iteration, str(beat.get("iteration_id")))
        found = None if row is None else (row.error, row.data_quality, row.symbols_ok, row.symbols_total)
    if found is None:
        if status != "ok":
            problems.append(f"last iteration {status}")
        return problems
    error, quality, symbols_ok, symbols_total = found
    if status != "ok":
        problems.append(f"last iteration {status}" + (f": {error}" if error else ""))
    report.update(data_quality=quality, symbols_ok=symbols_ok, symbols_total=symbols_total)
    if symbols_ok == 0:
        problems.append(f"no usable data: the last iteration had 0/{symbols_total} symbols with usable bars")
    elif quality < settings.data_quality_min:
        problems.append(
            f"data quality {quality:.0%} under DATA_QUALITY_MIN {settings.data_quality_min:.0%} in the last iteration "
            f"({symbols_ok}/{symbols_total} symbols with usable bars)"
        )
    return problems
