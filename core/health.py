"""The daemon's schedule and health verdict, shared by ``main.py health``/``status`` and the dashboard."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from config.settings import Schedule, Settings
from core.calendar import MarketCalendar, format_eastern
from core.persistence.repository import Repository


def schedule_for(settings: Settings, calendar: MarketCalendar) -> Callable[[datetime], datetime]:
    """When the daemon's next iteration runs after ``now``: once per NYSE session at open + offset, or every interval."""
    if settings.schedule is Schedule.INTERVAL:
        interval = timedelta(seconds=settings.loop_interval_seconds)
        return lambda now: now + interval
    offset = timedelta(minutes=settings.run_at_minutes_after_open)
    return lambda now: calendar.next_run_time(now, offset)


def health_report(settings: Settings, repository: Repository, calendar: MarketCalendar, now: datetime) -> dict[str, object]:
    """Healthy when the daemon's last heartbeat is not older than its next scheduled run plus the grace period,
    and trading is not HALTED."""
    problems: list[str] = []
    beat = repository.get_state("heartbeat")
    report: dict[str, object] = {"at": now.isoformat()}
    if beat is None:
        problems.append("no heartbeat: the daemon has not completed an iteration on this database")
    else:
        value = beat[0]
        last = datetime.fromisoformat(str(value["at"]))
        due = schedule_for(settings, calendar)(last)
        deadline = due + timedelta(minutes=settings.health_grace_minutes)
        report.update(last_heartbeat=last.isoformat(), last_iteration=value.get("iteration_id"), last_status=value.get("status"),
                      next_due=due.isoformat(), stale_after=deadline.isoformat())
        if now > deadline:
            problems.append(f"stale: last iteration {format_eastern(last)}, the next was due {format_eastern(due)}")
        if value.get("status") != "ok":
            report["warning"] = f"last iteration {value.get('status')}"
    risk = repository.get_state("risk:state")
    state = str(risk[0].get("state")) if risk is not None else "unknown"
    report["trading_state"] = state
    if risk is not None:
        report["trading_state_reason"] = risk[0].get("reason")
    if state == "halted":
        problems.append(f"halted: {risk[0].get('reason') if risk else ''} (reset with `python main.py reset --reason ...`)")
    report["healthy"] = not problems
    report["problems"] = problems
    return report
