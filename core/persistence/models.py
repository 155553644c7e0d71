"""SQLAlchemy 2.0 typed models. The schema itself is owned by the Alembic migrations next to this file."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.persistence.types import Money, UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), Decimal: Money(), dict[str, Any]: JSON()}


class Run(Base):
    """One process lifetime of the pipeline: a daemon session, a replay or a backtest."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    broker: Mapped[str] = mapped_column(String(32))
    data_provider: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")
    initial_cash: Mapped[Decimal]
    symbols: Mapped[dict[str, Any]]
    config: Mapped[dict[str, Any]]


class Iteration(Base):
    __tablename__ = "iterations"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_iterations_run_seq"),)

    id: Mapped[str] = mapped_column(String(96), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[datetime] = mapped_column(index=True)
    recorded_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    symbols_total: Mapped[int] = mapped_column(Integer)
    symbols_ok: Mapped[int] = mapped_column(Integer)
    data_quality: Mapped[float]
    signals: Mapped[int] = mapped_column(Integer, default=0)
    approvals: Mapped[int] = mapped_column(Integer, default=0)
    denials: Mapped[int] = mapped_column(Integer, default=0)
    orders: Mapped[int] = mapped_column(Integer, default=0)
    fills: Mapped[int] = mapped_column(Integer, default=0)


class DecisionRow(Base):
    """One row per agent decision per symbol per iteration, with the reason and the inputs behind it."""

    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("iteration_id", "agent", "symbol", name="uq_decisions_iteration_agent_symbol"),
        Index("ix_decisions_symbol_as_of", "symbol", "as_of"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    iteration_id: Mapped[str] = mapped_column(ForeignKey("iterations.id"))
    as_of: Mapped[datetime]
    agent: Mapped[str] = mapped_column(String(16))
    symbol: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    strategy: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float | None]
    reason: Mapped[str] = mapped_column(Text)
    inputs: Mapped[dict[str, Any]]


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_symbol_submitted", "symbol", "submitted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(String(128), unique=True)
    broker_order_id: Mapped[str | None] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    iteration_id: Mapped[str] = mapped_column(ForeignKey("iterations.id"))
    symbol: Mapped[str] = mapped_column(String(16))
    side: Mapped[str] = mapped_column(String(8))
    order_type: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Decimal]
    limit_price: Mapped[Decimal | None]
    stop_price: Mapped[Decimal | None]
    status: Mapped[str] = mapped_column(String(24))
    filled_quantity: Mapped[Decimal]
    average_fill_price: Mapped[Decimal | None]
    submitted_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    strategy: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)


class FillRow(Base):
    __tablename__ = "fills"
    __table_args__ = (Index("ix_fills_symbol_filled", "symbol", "filled_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    fill_id: Mapped[str] = mapped_column(String(128), unique=True)
    client_order_id: Mapped[str] = mapped_column(ForeignKey("orders.client_order_id"))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    iteration_id: Mapped[str] = mapped_column(ForeignKey("iterations.id"))
    symbol: Mapped[str] = mapped_column(String(16))
    side: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[Decimal]
    price: Mapped[Decimal]
    commission: Mapped[Decimal]
    filled_at: Mapped[datetime]


class PositionRow(Base):
    """The run's open positions as of its latest iteration (rewritten every iteration)."""

    __tablename__ = "positions"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    quantity: Mapped[Decimal]
    average_price: Mapped[Decimal]
    last_price: Mapped[Decimal | None]
    market_value: Mapped[Decimal]
    realized_pnl: Mapped[Decimal]
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    iteration_id: Mapped[str] = mapped_column(ForeignKey("iterations.id"))
    stop_price: Mapped[Decimal | None]
    target_price: Mapped[Decimal | None]


class EquitySnapshotRow(Base):
    __tablename__ = "equity_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    iteration_id: Mapped[str] = mapped_column(ForeignKey("iterations.id"), unique=True)
    at: Mapped[datetime]
    cash: Mapped[Decimal]
    market_value: Mapped[Decimal]
    equity: Mapped[Decimal]
    positions: Mapped[int] = mapped_column(Integer)


class AuditReportRow(Base):
    __tablename__ = "audit_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    iteration_id: Mapped[str] = mapped_column(ForeignKey("iterations.id"), unique=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    facts: Mapped[dict[str, Any]]


class LLMCallRow(Base):
    """Every LLM call: provider, model, prompt version and hash, tokens, cost, latency, retries, outcome."""

    __tablename__ = "llm_calls"
    __table_args__ = (Index("ix_llm_calls_started", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    iteration_id: Mapped[str | None] = mapped_column(String(96))
    purpose: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(96))
    prompt_version: Mapped[str] = mapped_column(String(48))
    prompt_hash: Mapped[str] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[Decimal | None]
    latency_ms: Mapped[float]
    retries: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(24))
    validation_errors: Mapped[dict[str, Any]]
    symbols: Mapped[dict[str, Any]]
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime]


class ShadowSignalRow(Base):
    """What every registered strategy would have signalled for a symbol in an iteration (the shadow ledger)."""

    __tablename__ = "shadow_signals"
    __table_args__ = (
        UniqueConstraint("iteration_id", "symbol", name="uq_shadow_iteration_symbol"),
        Index("ix_shadow_symbol_as_of", "symbol", "as_of"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    iteration_id: Mapped[str] = mapped_column(ForeignKey("iterations.id"))
    as_of: Mapped[datetime]
    symbol: Mapped[str] = mapped_column(String(16))
    selected: Mapped[str] = mapped_column(String(64))
    close: Mapped[float]
    signals: Mapped[dict[str, Any]]


class ShadowMatrixRow(Base):
    """The shadow ledger of one iteration, packed: every symbol's signal from every registered strategy as two
    symbols x strategies matrices (``core.persistence.shadow`` packs and unpacks them; runs recorded before this
    table keep their ``shadow_signals`` rows, which the same readers read)."""

    __tablename__ = "shadow_matrices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    iteration_id: Mapped[str] = mapped_column(ForeignKey("iterations.id"), unique=True)
    as_of: Mapped[datetime]
    strategies: Mapped[list[str]] = mapped_column(JSON)  # the matrices' columns
    symbols: Mapped[list[str]] = mapped_column(JSON)  # the matrices' rows
    selected: Mapped[list[str]] = mapped_column(JSON)  # per symbol, the strategy the selector chose
    closes: Mapped[bytes] = mapped_column(LargeBinary)  # per symbol, float64 little-endian
    codes: Mapped[bytes] = mapped_column(LargeBinary)  # int8 action codes (1 BUY, -1 SELL, 0 HOLD, -128 not eligible)
    strengths: Mapped[bytes] = mapped_column(LargeBinary)  # float64 little-endian, as recorded (0 on HOLD)


class BreakerEventRow(Base):
    """A circuit breaker's trip or recovery, or a change of the trading state (``name`` ``trading_state``, from/to
    the trading states, ``details``: session, equity, high-water mark, lock reference, drawdown, event)."""

    __tablename__ = "breaker_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(48))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]
    details: Mapped[dict[str, Any] | None]


class DaemonStateRow(Base):
    """Small persisted state that must survive a restart: trading state, breakers, heartbeat."""

    __tablename__ = "daemon_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class ReconciliationRow(Base):
    """A discrepancy between the database and the broker, and what was done about it."""

    __tablename__ = "reconciliation_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str | None] = mapped_column(String(16))
    details: Mapped[dict[str, Any]]
    resolution: Mapped[str] = mapped_column(Text)


class NotificationRow(Base):
    """One notification and its delivery: ``sent`` or ``failed`` (with the reason, never the URL), or ``dropped``
    (not attempted: the daemon stopped, or too many were waiting)."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    kinds: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)


class OrderIntentRow(Base):
    """An order the daemon is about to submit, written and committed BEFORE the request leaves the process.

    ``status``: ``pending`` (in doubt: submitted or about to be, not yet in the ledger), ``recorded`` (the broker's
    order is in ``orders``, written in the same transaction that flips this), ``never_accepted`` (the broker has no
    order with this client id once the submission window has passed). Every start and every iteration looks the
    pending ones up at the broker by client order id until they are settled."""

    __tablename__ = "order_intents"
    __table_args__ = (Index("ix_order_intents_broker_status", "broker", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(String(128), unique=True)
    broker: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    iteration_id: Mapped[str] = mapped_column(String(96))
    symbol: Mapped[str] = mapped_column(String(16))
    side: Mapped[str] = mapped_column(String(8))
    order_type: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Decimal]
    limit_price: Mapped[Decimal | None]
    stop_price: Mapped[Decimal | None]
    stop_loss: Mapped[Decimal | None]
    take_profit: Mapped[Decimal | None]
    reference_price: Mapped[Decimal]
    strategy: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float]
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    lookups: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None]


class PromotedConfigRow(Base):
    """A version of a strategy's parameters promoted by ``main.py optimize --promote`` (see
    :mod:`core.persistence.promotions`). ``status``: ``champion`` (the one the daemon trades; at most one per
    strategy), ``retired`` (superseded by a later promotion), ``reverted`` (its live record fell outside its
    out-of-sample expectation: the previous champion is active again). ``expectation``: the out-of-sample mean daily
    return, its standard deviation, the sessions, Sharpe, max drawdown and the band the daemon checks against."""

    __tablename__ = "promoted_configs"
    __table_args__ = (Index("ix_promoted_configs_strategy_status", "strategy", "status"),)

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    strategy: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    promoted_at: Mapped[datetime]
    source_study: Mapped[str] = mapped_column(String(200))
    source_key: Mapped[str] = mapped_column(String(64), unique=True)
    expectation: Mapped[dict[str, Any]]
    test: Mapped[dict[str, Any]]
    previous_version: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    changed_at: Mapped[datetime]


class CommandRow(Base):
    """An operator's command to the daemon (``main.py pause``, ``resume``, ``close``), written by the CLI from any
    host and picked up by the daemon at its next iteration or while it sleeps.

    ``status``: ``pending`` (written, not picked yet), ``done`` (applied: ``outcome`` says how), ``rejected`` (not
    applicable: an unknown symbol, no open position; ``outcome`` says why), ``expired`` (not picked in time). The pick
    flips ``pending`` to its final status in the same transaction that records the command's effect, so a command is
    applied once even when the daemon dies right after picking it."""

    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_status", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    args: Mapped[dict[str, Any]]
    requested_at: Mapped[datetime]
    requested_by: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    picked_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(Text)
