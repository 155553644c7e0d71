"""The shared vocabulary of the pipeline: daemon-state keys, decision agents and decision actions.

These names are written to the ledger (``daemon_state.key``, ``decisions.agent``, ``decisions.action``) and read back by
the reports, the dashboard and the CLI. They are :class:`enum.StrEnum` members, so each compares, hashes, formats and
serialises exactly as its string: the database content is the same whether a plain string or a member was written.

Replays and backtests keep their state under ``"<run id>:<key>"`` (see :func:`state_key`); the daemon uses the plain
key. This module imports nothing from the project: it sits with :mod:`core.kernel.domain` at the bottom of the layers.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ALL_NOTIFY_KINDS",
    "BREAKER_PREFIX",
    "DENIED_PREFIX",
    "AgentName",
    "DecisionAction",
    "NotifyKind",
    "StateKey",
    "denied",
    "parse_notify_kinds",
    "state_key",
]


class StateKey(StrEnum):
    """Keys of the ``daemon_state`` table (a replay's or backtest's are prefixed with its run id)."""

    HEARTBEAT = "heartbeat"
    RISK_STATE = "risk:state"
    LLM_BREAKER = "breaker:llm_selection"
    BROKER_BREAKER = "breaker:broker"
    SIMULATED_BROKER = "broker:simulated"
    CONTROL = "control"  # the operator's pause and queued closes (main.py pause / resume / close)


#: every breaker's state key starts with this (``breaker:<breaker name>``)
BREAKER_PREFIX = "breaker:"


def state_key(key: StateKey, namespace: str = "") -> str:
    """``key`` under ``namespace`` (``"<run id>:"`` for a replay or backtest, ``""`` for the daemon)."""
    return f"{namespace}{key}"


class AgentName(StrEnum):
    """The ``agent`` of a decision: the six agents, plus the strategy selector and the position manager."""

    DATA = "data"
    SELECTOR = "selector"
    STRATEGY = "strategy"
    QUANT = "quant"
    RISK = "risk"
    EXECUTION = "execution"
    AUDIT = "audit"
    POSITIONS = "positions"


class DecisionAction(StrEnum):
    """The fixed ``action`` values of decisions (a risk denial is ``denied(rule)``; a strategy's is its signal)."""

    OK = "ok"
    SKIP = "skip"
    NONE = "none"
    FLAGGED = "flagged"
    NOT_LISTED = "not_listed"
    REJECTED = "rejected"
    VALIDATED = "validated"
    APPROVED = "approved"
    SUBMITTED = "submitted"
    FAILED = "failed"
    PAUSED = "paused"
    TRAIL_STOP = "trail_stop"
    TRAIL_FAILED = "trail_failed"
    CHOSE = "chose"
    ABSTAIN = "abstain"


#: a risk denial's action is this prefix followed by the rule that denied
DENIED_PREFIX = "denied:"


def denied(rule: str) -> str:
    """The action of a risk denial by ``rule``: ``"denied:<rule>"``."""
    return f"{DENIED_PREFIX}{rule}"


class NotifyKind(StrEnum):
    """What a notification is about (``notifications.kinds``); NOTIFY_KINDS switches each on or off."""

    ENTRY = "entry"  # an entry order submitted, or filled
    EXIT = "exit"  # an exit order submitted (signal, time stop), or filled
    FILL = "fill"  # a protective stop-loss or take-profit order filled
    PROTECTION = "protection"  # drawdown lock, halt, release, reduce, recover, manual reset
    BREAKER = "breaker"  # a circuit breaker tripped or recovered (LLM, broker, data quality, daemon lock)
    RECONCILIATION = "reconciliation"  # a discrepancy between the broker and the ledger
    DATA = "data"  # symbols excluded, no usable data
    HEALTH = "health"  # a failed or degraded iteration; an unhealthy health check
    SUMMARY = "summary"  # the end-of-session summary
    START = "start"
    STOP = "stop"
    CRASH = "crash"


ALL_NOTIFY_KINDS = frozenset(NotifyKind)


def parse_notify_kinds(text: str) -> frozenset[NotifyKind]:
    """NOTIFY_KINDS: ``all``, or kinds separated by commas or spaces; ``-kind`` removes one (``all,-summary``).
    Raises ValueError naming an unknown kind."""
    words = [w.strip().lower() for w in text.replace(",", " ").split() if w.strip()]
    if not words:
        raise ValueError("must name at least one kind, or 'all'")
    names = {k.value for k in NotifyKind}
    chosen: set[NotifyKind] = set()
    for word in words:
        name = word.removeprefix("-")
        if name != "all" and name not in names:
            raise ValueError(f"unknown kind {name!r}; kinds: all, {', '.join(k.value for k in NotifyKind)}")
        members = ALL_NOTIFY_KINDS if name == "all" else {NotifyKind(name)}
        if word.startswith("-"):
            chosen -= members
        else:
            chosen |= members
    return frozenset(chosen)
