"""What differs between the daemon, a replay and a backtest, as named facts rather than a kind string.

:func:`core.runtime.app.build_app` wires the same six agents for every run; a :class:`RunProfile` says which broker it
builds, where the run's state lives, what it restores and which safety machinery (reconciler, order intents, lock guard,
heartbeat, iteration deadline) it switches on. :class:`PipelineOptions` holds the knobs a backtest turns (sizing, risk
limits, a pinned strategy, batching, recorded decisions, session validation); their defaults are the daemon's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from collections.abc import Mapping

from core.vocabulary import StateKey
from strategies.base import Strategy
from strategies.selector import StrategySelector


class OrderPrefix(StrEnum):
    """How a run's client order ids begin: with the trading mode (``paper``/``live``: one daemon ledger across
    restarts) or with the run's own id (a replay or backtest never collides with another run's orders)."""

    TRADING_MODE = "trading_mode"
    RUN_ID = "run_id"


@dataclass(frozen=True, slots=True)
class RunProfile:
    """The facts of one kind of run. ``kind`` is what the runs table records."""

    kind: str
    # BROKER as configured (Alpaca, paper or live, or the simulated one) rather than always the simulated broker
    live_broker: bool
    # state (breakers, risk state) under the shared namespace, surviving restarts, rather than the run's own
    shared_state: bool
    # the broker ledger's recorded fills are replayed into the realised P&L at start
    replay_ledger_fills: bool
    # a simulated broker's account is persisted with every iteration and restored at start
    persist_simulated_broker: bool
    # every order intent is written to the database before it is submitted (and ones in doubt are resolved)
    write_order_intents: bool
    # a reconciler compares the broker with the ledger
    reconcile: bool
    order_prefix: OrderPrefix
    # the state key the audit agent writes its heartbeat under (None: no heartbeat)
    heartbeat_key: StateKey | None
    # ITERATION_DEADLINE_SECONDS bounds each iteration (a backtest never waits on a remote service: no timer)
    iteration_deadline: bool
    # the database lock is verified before every iteration (when the run holds it)
    guard_lock: bool
    # the Risk agent's spread rule asks Alpaca for live quotes (when configured); otherwise historical bars only
    live_quotes: bool
    # NOTIFY_URLS receive the run's notifications (the daemon's; a replay only when asked, a backtest never)
    notify: bool = False
    # the strategies trade the promoted parameter versions, re-read before every iteration (core.runtime.promoted)
    promoted_params: bool = False

    @classmethod
    def for_kind(cls, kind: str) -> RunProfile:
        """``daemon`` and ``backtest`` have their own profiles; any other kind (``replay``, ``demo``) is a replay
        recorded under that kind."""
        if kind == DAEMON.kind:
            return DAEMON
        if kind == BACKTEST.kind:
            return BACKTEST
        return REPLAY if kind == REPLAY.kind else replace(REPLAY, kind=kind)

    def state_namespace(self, run_id: str) -> str:
        """The prefix of the run's state keys: none for shared state, ``<run_id>:`` for a run's own."""
        return "" if self.shared_state else f"{run_id}:"

    def client_order_prefix(self, trading_mode: str, run_id: str) -> str:
        return trading_mode if self.order_prefix is OrderPrefix.TRADING_MODE else run_id

    def deadline_s(self, iteration_deadline_seconds: float) -> float | None:
        return iteration_deadline_seconds if self.iteration_deadline else None


DAEMON = RunProfile(
    kind="daemon",
    live_broker=True,
    shared_state=True,
    replay_ledger_fills=True,
    persist_simulated_broker=True,
    write_order_intents=True,
    reconcile=True,
    order_prefix=OrderPrefix.TRADING_MODE,
    heartbeat_key=StateKey.HEARTBEAT,
    iteration_deadline=True,
    guard_lock=True,
    live_quotes=True,
    notify=True,
    promoted_params=True,
)

REPLAY = RunProfile(
    kind="replay",
    live_broker=False,
    shared_state=False,
    replay_ledger_fills=False,
    persist_simulated_broker=False,
    write_order_intents=False,
    reconcile=False,
    order_prefix=OrderPrefix.RUN_ID,
    heartbeat_key=None,
    iteration_deadline=True,
    guard_lock=False,
    live_quotes=False,
)

BACKTEST = replace(REPLAY, kind="backtest", iteration_deadline=False)


@dataclass(frozen=True)
class PipelineOptions:
    """The pipeline's knobs; the defaults are the daemon's (and a replay's).

    ``sizing``/``enforce_limits``: the Risk agent's sizing rule and whether its limits apply; ``selector``/``registry``:
    override the deterministic selector and the strategy registry (backtests pin a strategy); ``audit_batch``:
    iterations per database transaction (1 for the daemon; more for backtests); ``routine_decisions=False`` records
    only the decisions that carry information (no "data ok", HOLD, "skip" or "no order" rows for every symbol of every
    iteration), as backtests do by default; ``validate_sessions=False``: the Data agent checks bars without the
    exchange calendar (no off-session or missing-session rule), for a backtest whose sessions are the data's own dates
    (``backtest --calendar data``)."""

    sizing: str = "risk"
    enforce_limits: bool = True
    selector: StrategySelector | None = None
    registry: Mapping[str, Strategy] | None = None
    audit_batch: int = 1
    routine_decisions: bool = True
    validate_sessions: bool = True


PIPELINE_DEFAULTS = PipelineOptions()
