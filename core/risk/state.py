"""The trading-state machine: ACTIVE, REDUCING, LOCKED (a drawdown lock that resumes) and HALTED (until a reset).

Two layers, both pure functions of the values passed in (no clock, no I/O):

``next_state`` - the loss limits of one session, evaluated against the day start and the 5-session high:

    HALTED, LOCKED -> unchanged  (only ``step`` / ``reset_state`` move them)
    any      -> LOCKED    daily loss >= halt_daily_loss or weekly drawdown >= halt_weekly_drawdown (a crash lock)
    ACTIVE   -> REDUCING  daily loss >= max_daily_loss or weekly drawdown >= max_weekly_drawdown
    REDUCING -> REDUCING  while either limit is still hit, and for the rest of the session even once back within
                          limits (no intraday flip-flopping around the threshold)
    REDUCING -> ACTIVE    on the first evaluation of a new session when both limits are back within range
    ACTIVE   -> ACTIVE    otherwise

    daily loss      = (equity_day_start - equity) / equity_day_start   (not applicable without a positive start)
    weekly drawdown = (equity_week_high - equity) / equity_week_high   (not applicable without a positive high)

``step`` - the whole machine, once per iteration, with the drawdown protections of :class:`DrawdownRules` and the
persisted :class:`Protection` (state, high-water mark, lock reference, session counter):

    high_water_mark  the highest equity since the start or the last manual reset      (the HALT's reference)
    lock_reference   the highest equity since the start, the last release or reset     (the LOCK's reference)

    1. HALTED stays HALTED (sticky): only ``reset_protection`` (``main.py reset``) leaves it.
    2. equity <= high_water_mark x (1 - halt)                           -> HALTED  (the deep, hard halt)
    3. LOCKED: each new session counts; after ``lock_sessions`` sessions locked the lock is RELEASED:
       the lock reference is reset to the equity at release (so it does not re-lock at once on the same
       drawdown) and the state becomes REDUCING for ``reducing_sessions`` sessions (ACTIVE if that is 0).
    4. equity <= lock_reference x (1 - lock), or a crash (see ``next_state``) -> LOCKED (from ACTIVE or REDUCING;
       a new lock while REDUCING restarts the cool-down)
    5. REDUCING after a release: entries at ``RiskLimits.reducing_size``; ACTIVE again once ``reducing_sessions``
       sessions have passed and the loss limits are within range.
    6. otherwise the loss limits of ``next_state`` (ACTIVE <-> REDUCING).

A session is a trading day (``session``, passed in by the caller, who owns the clock): several iterations within
one session count once, so a backtest and the daemon count the cool-down alike. Every state change is returned as a
:class:`Transition` (lock, release, recover, halt, reduce, reset) with the equity, the references and the reason,
for the record. :func:`trading_episodes` turns the recorded transitions into the LOCKED/HALTED episodes of a run.

Exits are allowed in every state (``core.risk.rules.evaluate_exit``): a lock or a halt never force-sells a held
position and never stops one from being sold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from collections.abc import Iterable, Mapping, Sequence

from core.kernel.calendar import EASTERN
from core.risk.models import PortfolioView, RiskLimits, TradingState

TRADING_STATE_EVENT = "trading_state"  # the breaker_events name of every trading-state change


@dataclass(frozen=True, slots=True)
class LossMetrics:
    """Losses as positive fractions (a gain gives a negative number); None when not computable."""

    daily_loss: float | None
    weekly_drawdown: float | None


def _drop(reference: float | None, equity: float) -> float | None:
    if reference is None:
        return None
    reference = float(reference)
    if not reference > 0:  # also rejects NaN
        return None
    return (reference - float(equity)) / reference


def loss_metrics(portfolio: PortfolioView) -> LossMetrics:
    return LossMetrics(
        daily_loss=_drop(portfolio.equity_day_start, portfolio.equity),
        weekly_drawdown=_drop(portfolio.equity_week_high, portfolio.equity),
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _hit(value: float | None, limit: float | None) -> bool:
    return value is not None and limit is not None and value >= limit


def next_state(
    current: TradingState,
    portfolio: PortfolioView,
    limits: RiskLimits,
    *,
    new_session: bool = False,
) -> tuple[TradingState, str]:
    """The loss-limit state for this iteration and a readable reason with the numbers (see module docstring)."""
    current = TradingState(current)
    if current is TradingState.HALTED:
        return TradingState.HALTED, "HALTED is sticky: trading stays halted until a manual reset"
    if current is TradingState.LOCKED:
        return TradingState.LOCKED, "LOCKED until its cool-down has passed"

    m = loss_metrics(portfolio)
    figures = (
        f"daily loss {_pct(m.daily_loss)} (limit {limits.max_daily_loss:.2%}), "
        f"weekly drawdown {_pct(m.weekly_drawdown)} (limit {limits.max_weekly_drawdown:.2%})"
    )
    if _hit(m.daily_loss, limits.halt_daily_loss) or _hit(m.weekly_drawdown, limits.halt_weekly_drawdown):
        return TradingState.LOCKED, (
            f"{current.value} -> locked: daily loss {_pct(m.daily_loss)} (lock at {_pct(limits.halt_daily_loss)}), "
            f"weekly drawdown {_pct(m.weekly_drawdown)} (lock at {_pct(limits.halt_weekly_drawdown)})"
        )
    breached = _hit(m.daily_loss, limits.max_daily_loss) or _hit(m.weekly_drawdown, limits.max_weekly_drawdown)
    if current is TradingState.ACTIVE:
        if breached:
            return TradingState.REDUCING, f"active -> reducing: {figures}"
        return TradingState.ACTIVE, f"active: within limits: {figures}"
    # REDUCING
    if breached:
        return TradingState.REDUCING, f"reducing: a loss limit is still hit: {figures}"
    if not new_session:
        return TradingState.REDUCING, f"reducing until a new session although back within limits: {figures}"
    return TradingState.ACTIVE, f"reducing -> active: new session and within limits: {figures}"


def reset_state(current: TradingState, *, reason: str) -> tuple[TradingState, str]:
    """Manual operator reset to ACTIVE (the only way out of HALTED). ``reason`` is required for the audit trail.

    The next ``next_state`` call re-applies the loss limits, so a reset while still beyond them goes straight back
    to REDUCING/LOCKED."""
    if not reason or not reason.strip():
        raise ValueError("reset_state needs a non-empty reason (who reset and why)")
    return TradingState.ACTIVE, f"manual reset {TradingState(current).value} -> active: {reason.strip()}"


# ------------------------------------------------------------------------------------ drawdown protections


@dataclass(frozen=True, slots=True)
class DrawdownRules:
    """The drawdown protections (settings ``DRAWDOWN_LOCK``, ``DRAWDOWN_LOCK_SESSIONS``,
    ``DRAWDOWN_REDUCING_SESSIONS``, ``DRAWDOWN_HALT``).

    lock               fraction below the lock reference that LOCKS new entries (None: no drawdown lock)
    lock_sessions      sessions a lock lasts before it is released
    reducing_sessions  sessions of REDUCING (reduced-size entries) after a release before ACTIVE (0: straight to ACTIVE)
    halt               fraction below the high-water mark that HALTS trading until a manual reset (None: never)
    """

    lock: float | None = 0.10
    lock_sessions: int = 20
    reducing_sessions: int = 10
    halt: float | None = 0.25

    def __post_init__(self) -> None:
        for name in ("lock", "halt"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and 0 < value <= 1):
                raise ValueError(f"DrawdownRules.{name} must be within (0, 1] or None, got {value!r}")
        for name, low in (("lock_sessions", 1), ("reducing_sessions", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"DrawdownRules.{name} must be an integer >= {low}, got {value!r}")
        if self.lock is not None and self.halt is not None and self.halt < self.lock:
            raise ValueError(
                f"DrawdownRules.halt ({self.halt}) must not be below lock ({self.lock}): the halt is the deeper one"
            )


@dataclass(frozen=True, slots=True)
class Protection:
    """The persisted trading state (``as_dict``/``from_dict`` for ``daemon_state``).

    sessions   sessions served in the current LOCKED phase or post-release REDUCING phase (the session that
               started it counts as 1)
    recovering True while REDUCING after a lock release (counts ``reducing_sessions``); False for the REDUCING of
               the loss limits
    session    ISO date of the last session evaluated (to count sessions, not iterations)
    """

    state: TradingState = TradingState.ACTIVE
    reason: str = "start"
    high_water_mark: float | None = None
    lock_reference: float | None = None
    sessions: int = 0
    recovering: bool = False
    session: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reason": self.reason,
            "high_water_mark": self.high_water_mark,
            "lock_reference": self.lock_reference,
            "sessions": self.sessions,
            "recovering": self.recovering,
            "session": self.session,
        }

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> Protection:
        """Read a persisted state (older snapshots without the lock fields are accepted: their lock reference is the
        high-water mark). Raises ValueError naming a bad field."""
        try:
            state = TradingState(saved.get("state", "active"))
        except ValueError:
            raise ValueError(
                f"trading state {saved.get('state')!r} is not one of {[s.value for s in TradingState]}"
            ) from None

        def number(key: str) -> float | None:
            value = saved.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"trading state {key} must be a finite number or null, got {value!r}")
            return float(value)

        sessions = saved.get("sessions", 0)
        if isinstance(sessions, bool) or not isinstance(sessions, int) or sessions < 0:
            raise ValueError(f"trading state sessions must be a non-negative integer, got {sessions!r}")
        session = saved.get("session")
        if session is not None:
            date.fromisoformat(str(session))  # raises ValueError on a bad date
        hwm = number("high_water_mark")
        reference = number("lock_reference")
        return cls(
            state=state,
            reason=str(saved.get("reason", "restored")),
            high_water_mark=hwm,
            lock_reference=reference if reference is not None else hwm,
            sessions=sessions,
            recovering=bool(saved.get("recovering", False)),
            session=str(session) if session is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of the trading state, for the record (``breaker_events`` row ``trading_state``).

    event: ``lock`` (-> LOCKED), ``release`` (LOCKED -> REDUCING/ACTIVE after the cool-down), ``recover``
    (REDUCING -> ACTIVE), ``reduce`` (ACTIVE -> REDUCING on a loss limit), ``halt`` (-> HALTED), ``reset`` (manual)."""

    event: str
    from_state: TradingState
    to_state: TradingState
    reason: str
    session: str | None
    equity: float | None
    high_water_mark: float | None
    lock_reference: float | None
    drawdown: float | None  # below the high-water mark

    def details(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "session": self.session,
            "equity": self.equity,
            "high_water_mark": self.high_water_mark,
            "lock_reference": self.lock_reference,
            "drawdown": self.drawdown,
        }


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def step(
    current: Protection,
    portfolio: PortfolioView,
    limits: RiskLimits,
    rules: DrawdownRules,
    *,
    session: date,
) -> tuple[Protection, Transition | None]:
    """One evaluation of the trading state for an iteration of ``session`` (see the module docstring)."""
    session_key = session.isoformat()
    new_session = current.session != session_key
    equity = float(portfolio.equity)
    valid = math.isfinite(equity) and equity > 0
    hwm, reference = current.high_water_mark, current.lock_reference
    if valid:
        hwm = equity if hwm is None else max(hwm, equity)
        reference = equity if reference is None else max(reference, equity)
    sessions = current.sessions + (1 if new_session else 0)
    base = replace(current, high_water_mark=hwm, lock_reference=reference, sessions=sessions, session=session_key)
    drawdown = _drop(hwm, equity) if valid else None
    lock_drop = _drop(reference, equity) if valid else None

    def move(event: str, to: TradingState, reason: str, **changes: Any) -> tuple[Protection, Transition]:
        new = replace(base, state=to, reason=reason, **changes)
        return new, Transition(
            event,
            current.state,
            to,
            reason,
            session_key,
            equity if valid else None,
            new.high_water_mark,
            new.lock_reference,
            drawdown,
        )

    if current.state is TradingState.HALTED:
        return replace(current, session=session_key), None
    if rules.halt is not None and _hit(drawdown, rules.halt):
        return move(
            "halt",
            TradingState.HALTED,
            f"equity {_money(equity)} is {_pct(drawdown)} below its high-water mark {_money(hwm)} (halt at "
            f"{rules.halt:.0%}): HALTED until `main.py reset`",
            sessions=0,
            recovering=False,
        )
    if current.state is TradingState.LOCKED:
        if sessions <= rules.lock_sessions:
            return base, None
        to = TradingState.REDUCING if rules.reducing_sessions > 0 else TradingState.ACTIVE
        then = (
            f"reducing (entries at {limits.reducing_size:g} x size) for {rules.reducing_sessions} sessions"
            if to is TradingState.REDUCING
            else "active"
        )
        return move(
            "release",
            to,
            f"lock released after {rules.lock_sessions} sessions: equity {_money(equity)}, high-water mark {_money(hwm)}; "
            f"the lock reference is reset to the equity at release; {then}",
            lock_reference=equity if valid else reference,
            sessions=1,
            recovering=to is TradingState.REDUCING,
        )
    if rules.lock is not None and _hit(lock_drop, rules.lock):
        return move(
            "lock",
            TradingState.LOCKED,
            f"drawdown {_pct(lock_drop)} from the lock reference {_money(reference)} (lock at {rules.lock:.0%}; "
            f"equity {_money(equity)}, high-water mark {_money(hwm)}): no new entries for {rules.lock_sessions} sessions",
            sessions=1,
            recovering=False,
        )
    loss_state, loss_reason = next_state(
        TradingState.ACTIVE if current.state is TradingState.REDUCING and current.recovering else current.state,
        portfolio,
        limits,
        new_session=new_session,
    )
    if loss_state is TradingState.LOCKED:
        return move(
            "lock",
            TradingState.LOCKED,
            f"{loss_reason}: no new entries for {rules.lock_sessions} sessions",
            sessions=1,
            recovering=False,
        )
    if current.state is TradingState.REDUCING and current.recovering:
        if sessions > rules.reducing_sessions and loss_state is TradingState.ACTIVE:
            return move(
                "recover",
                TradingState.ACTIVE,
                f"reducing -> active: {rules.reducing_sessions} sessions since the lock was released, within the loss limits",
                sessions=0,
                recovering=False,
            )
        return replace(
            base, reason=f"reducing after a lock release: session {sessions} of {rules.reducing_sessions}"
        ), None
    if loss_state is not current.state:
        return move(
            "reduce" if loss_state is TradingState.REDUCING else "recover",
            loss_state,
            loss_reason,
            sessions=0,
            recovering=False,
        )
    return replace(base, reason=loss_reason, sessions=0), None


def reset_protection(
    current: Protection, *, reason: str, equity: float | None, session: date | None = None
) -> tuple[Protection, Transition]:
    """The manual reset (``main.py reset``): ACTIVE, the high-water mark and the lock reference set to ``equity``
    (None: set from the next evaluated equity). The only way out of HALTED."""
    state, why = reset_state(current.state, reason=reason)
    value = float(equity) if equity is not None and math.isfinite(float(equity)) and float(equity) > 0 else None
    new = Protection(
        state=state,
        reason=why,
        high_water_mark=value,
        lock_reference=value,
        sessions=0,
        recovering=False,
        session=current.session,
    )
    return new, Transition(
        "reset",
        current.state,
        state,
        why,
        session.isoformat() if session is not None else current.session,
        value,
        value,
        value,
        None,
    )


# ------------------------------------------------------------------------------------ the record of a run


def session_of(at: datetime) -> date:
    """The trading session (New York date) of an instant."""
    return at.astimezone(EASTERN).date()


def advance(
    current: Protection, portfolio: PortfolioView, limits: RiskLimits, rules: DrawdownRules, *, at: datetime
) -> tuple[Protection, Transition | None]:
    """:func:`step` for an iteration at ``at`` (its session is the New York date)."""
    return step(current, portfolio, limits, rules, session=session_of(at))


def transition_record(transition: Transition, at: datetime) -> dict[str, Any]:
    """A state change as its ``breaker_events`` row (named :data:`TRADING_STATE_EVENT`)."""
    return {
        "name": TRADING_STATE_EVENT,
        "from_state": transition.from_state.value,
        "to_state": transition.to_state.value,
        "reason": transition.reason,
        "at": at,
        "details": transition.details(),
    }


def restore_protection(saved: Mapping[str, Any]) -> Protection:
    """The persisted trading state; the latch of earlier versions (``equity_drawdown``), when tripped, means HALTED.
    Raises ValueError naming a bad field."""
    protection = Protection.from_dict(saved)
    legacy = saved.get("equity_drawdown")
    if isinstance(legacy, Mapping) and legacy.get("state") == "open" and protection.state is not TradingState.HALTED:
        protection = replace(
            protection,
            state=TradingState.HALTED,
            reason=f"halted by the equity drawdown breaker: {legacy.get('reason', '')}",
        )
    return protection


def reset_saved(saved: Mapping[str, Any], *, reason: str, equity: float | None, at: datetime) -> dict[str, Any]:
    """The manual reset of a persisted state: ACTIVE again, the high-water mark and the lock reference set to
    ``equity``; the other saved fields are kept (the latch of earlier versions is dropped)."""
    protection, _ = reset_protection(Protection.from_dict(saved), reason=reason, equity=equity, session=session_of(at))
    kept = {k: v for k, v in saved.items() if k != "equity_drawdown"}
    return {**kept, **protection.as_dict()}


# ------------------------------------------------------------------------------------------------ episodes


EPISODE_STATES = (TradingState.LOCKED.value, TradingState.HALTED.value)


def trading_episodes(
    transitions: Iterable[tuple[date, str, str, str]],
    sessions: Sequence[date],
) -> list[dict[str, Any]]:
    """The LOCKED and HALTED episodes of a run from its recorded state changes.

    ``transitions``: ``(session date, from_state, to_state, reason)`` in order; ``sessions``: the run's session dates
    in order. An episode runs from the session of the change into ``locked``/``halted`` (the first session affected)
    to the last session before the change out of it (``end`` None when still in force at the last session);
    ``sessions`` counts the run's sessions within it. Returns dicts
    ``{"state", "start", "end", "sessions", "reason"}`` with ISO dates."""
    days = sorted(set(sessions))
    episodes: list[dict[str, Any]] = []
    open_: dict[str, Any] | None = None

    def close(until: date | None) -> None:
        assert open_ is not None
        start = open_["start_day"]
        inside = [d for d in days if d >= start and (until is None or d < until)]
        end = None if until is None else (inside[-1] if inside else start)
        episodes.append(
            {
                "state": open_["state"],
                "start": start.isoformat(),
                "end": end.isoformat() if end is not None else None,
                "sessions": len(inside),
                "reason": open_["reason"],
            }
        )

    for day, _from, to, reason in transitions:
        if open_ is not None and to != open_["state"]:
            close(day)
            open_ = None
        if to in EPISODE_STATES and open_ is None:
            open_ = {"state": to, "start_day": day, "reason": reason}
    if open_ is not None:
        close(None)
    return episodes


def sessions_in(episodes: Sequence[Mapping[str, Any]], state: str) -> int:
    """Total sessions of the episodes in ``state``."""
    return sum(int(e["sessions"]) for e in episodes if e["state"] == state)


def describe_episode(episode: Mapping[str, Any]) -> str:
    """One line, e.g. ``LOCKED 2011-08-05 .. 2011-09-01 (20 sessions): drawdown 10.2% ...``."""
    end = episode["end"] if episode["end"] is not None else "end of run, still in force"
    return (
        f"{episode['state'].upper()} {episode['start']} .. {end} ({episode['sessions']} sessions): {episode['reason']}"
    )
