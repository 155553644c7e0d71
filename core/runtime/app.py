"""Composition root: builds clock, bus, provider, broker, repository and the six agents from the settings.

``main.py`` and the end-to-end tests both go through :func:`build_app`, so the tests exercise the real wiring.
"""

from __future__ import annotations

import secrets as _secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from time import monotonic as _monotonic
from decimal import Decimal
from typing import Any, cast
from collections.abc import Callable, Sequence
from zoneinfo import ZoneInfo

from loguru import logger
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from agents.audit_agent import AuditAgent
from agents.data_agent import DataAgent
from agents.execution_agent import ExecutionAgent
from agents.quant_agent import QuantAgent
from agents.risk_agent import RiskAgent
from agents.strategy_agent import StrategyAgent
from urllib.parse import urlsplit

from config.settings import (
    BrokerName,
    DataFallback,
    DataProviderName,
    LLMProvider,
    Settings,
    SettingsError,
    Toggle,
    TradingMode,
    mask_url_credentials,
)
from core.brokers.alpaca import AlpacaBroker
from core.brokers.base import Broker, PersistentBroker
from core.brokers.costs import BpsSlippage, PerShareCommission
from core.brokers.simulated import SimulatedBroker
from core.kernel.bus import EventBus
from core.kernel.calendar import MarketCalendar
from core.kernel.clock import Clock, LiveClock, SimulatedClock
from core.kernel.domain import TERMINAL_ORDER_STATUSES, Fill
from core.data.base import BarProvider
from core.data.quotes import QuoteSource
from core.data.files import FileProvider
from core.data.synthetic import SyntheticProvider
from core.errors import ConfigurationError
from core.kernel.events import ApprovedReady, DataReady, ExecutedReady, IterationStarted, SignalsReady, ValidatedReady
from core.kernel.frame_cache import FrameCache
from core.notify import Notifier, build_notifier
from core.runtime.orchestrator import Orchestrator
from core.runtime.promoted import PromotedParams, chain_guards
from core.runtime.profile import PIPELINE_DEFAULTS, PipelineOptions, RunProfile
from core.runtime.readmodel import ReadModel
from core.risk.positions import PositionManager
from core.persistence.reconcile import Reconciler
from core.persistence.db import DaemonLock, DaemonLockLost, open_database, safe_url, schema_cache_dir
from core.persistence.repository import Repository
from core.data.alpaca import AlpacaBarProvider
from core.data.cache import DiskBarCache
from core.data.chain import FallbackChain
from core.data.memo import MemoizingProvider
from core.analytics.narrative import Narrator, build_anthropic_narrator, summarize
import core.llm as llm_clients  # the SDK clients load when a provider is built (see core.llm)
from core.llm import LLMSelector
from core.llm.providers import SelectionProvider
from core.runtime.llm_setup import LLMBooks, llm_books, note_llm_run
from core.risk import DrawdownRules, RiskLimits, load_sector_map
from core.risk import features as risk_features
from core.vocabulary import AgentName, StateKey, state_key
from utils.circuit_breaker import BackoffBreaker, BreakerEvent, ConsecutiveFailureBreaker
from utils.rate_limiter import SlidingWindowRateLimiter
from utils.secrets import install_database_scrubber
from strategies.registry import build_registry
from strategies.selector import DeterministicSelector, FixedSelector

NEW_YORK = ZoneInfo("America/New_York")


def session_close_utc(day: date) -> datetime:
    """16:00 New York time on ``day``, in UTC (the decision time of a daily iteration)."""
    return datetime.combine(day, time(16, 0), tzinfo=NEW_YORK).astimezone(UTC)


def new_run_id(kind: str, at: datetime) -> str:
    return f"{kind}-{at:%Y%m%dT%H%M%S}-{_secrets.token_hex(3)}"


def public_config(settings: Settings) -> dict[str, Any]:
    """Settings without secrets, for the run row: no API key, and every URL's user-info (proxy or database
    credentials) masked."""
    data = settings.model_dump(
        mode="json",
        exclude={"alpaca_api_key", "alpaca_secret_key", "groq_api_key", "anthropic_api_key", "notify_urls"},
    )
    for name, value in data.items():
        if isinstance(value, str) and "://" in value:
            data[name] = mask_url_credentials(value)
    data["database_url"] = safe_url(settings.database_url)  # a PostgreSQL password must not land in the runs table
    data["has_alpaca_keys"] = settings.has_alpaca_keys
    return data


LIVE_TRADING_HOST = "api.alpaca.markets"
PAPER_TRADING_HOST = "paper-api.alpaca.markets"


def check_trading_endpoint(settings: Settings) -> None:
    """The paper guard's first half: ALPACA_TRADING_URL must not name the other mode's Alpaca endpoint.

    Other hosts (a proxy, a local test server) cannot be judged by name: :meth:`AlpacaBroker.identify` then checks
    at start-up that the account behind them is of the configured mode."""
    url = settings.alpaca_trading_url
    if not url:
        return
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if settings.trading_mode is TradingMode.PAPER and host == LIVE_TRADING_HOST:
        raise SettingsError(
            f"ALPACA_TRADING_URL points at Alpaca's LIVE endpoint ({LIVE_TRADING_HOST}) but TRADING_MODE=paper; "
            f"use https://{PAPER_TRADING_HOST} (or leave it empty) for paper trading"
        )
    if settings.trading_mode is TradingMode.LIVE and host == PAPER_TRADING_HOST:
        raise SettingsError(
            f"ALPACA_TRADING_URL points at Alpaca's paper endpoint ({PAPER_TRADING_HOST}) but TRADING_MODE=live"
        )


SYNTHETIC_START = date(2015, 1, 2)
# the offline daemon's persisted simulated account keeps this many finished orders and reported fills (the ledger holds
# them all): its snapshot, written every iteration, stays the same size however long the daemon runs
SIMULATED_SNAPSHOT_HISTORY = 200


class MissingKeys(ConfigurationError, ValueError):
    """A configured component needs API keys that are not set."""


def _alpaca_data_client(settings: Settings, limiter: SlidingWindowRateLimiter, **options: Any) -> AlpacaBarProvider:
    """An Alpaca market-data client with the configured keys, feed, timeout, data URL and longest retry wait (the
    caller has checked ``settings.has_alpaca_keys``); ``options`` are the client's other keyword arguments."""
    assert settings.alpaca_api_key is not None and settings.alpaca_secret_key is not None
    return AlpacaBarProvider(
        settings.alpaca_api_key.get_secret_value(),
        settings.alpaca_secret_key.get_secret_value(),
        feed=settings.alpaca_data_feed,
        timeout_s=settings.alpaca_timeout_seconds,
        url_override=settings.alpaca_data_url,
        max_retry_after_s=settings.alpaca_max_retry_wait_seconds,
        limiter=limiter,
        **options,
    )


def build_provider(
    settings: Settings,
    calendar: MarketCalendar,
    *,
    limiter: SlidingWindowRateLimiter | None = None,
    now: Callable[[], datetime] | None = None,
) -> BarProvider:
    """The configured data provider: files, synthetic, or Alpaca (optionally falling back to files), behind an
    in-memory TTL cache when it is Alpaca."""
    if settings.data_provider is DataProviderName.FILES:
        return FileProvider(settings.data_dir)
    if settings.data_provider is DataProviderName.SYNTHETIC:
        return SyntheticProvider(seed=settings.synthetic_seed, start=SYNTHETIC_START, calendar=calendar)
    if not settings.has_alpaca_keys:
        raise MissingKeys("DATA_PROVIDER=alpaca needs ALPACA_API_KEY and ALPACA_SECRET_KEY")
    alpaca = _alpaca_data_client(
        settings,
        limiter or SlidingWindowRateLimiter(settings.alpaca_rate_limit_per_minute, 60.0),
        cache=DiskBarCache(settings.bar_cache_dir),
        default_lookback=timedelta(days=int(settings.history_bars * 7 / 5) + 10),
        is_session=calendar.is_session,
    )
    provider: BarProvider = alpaca
    if settings.data_fallback is DataFallback.FILES:
        provider = FallbackChain([alpaca, FileProvider(settings.data_dir)])
    if settings.bar_cache_ttl_seconds > 0:
        provider = MemoizingProvider(
            provider,
            ttl=timedelta(seconds=settings.bar_cache_ttl_seconds),
            now=now or LiveClock().now,
            calendar=calendar,
        )
    return provider


def build_narrator(settings: Settings, wall: Clock, *, allow: bool, books: LLMBooks | None = None) -> Narrator | None:
    """Anthropic narrates audit reports when configured (never in replays unless asked); otherwise the template."""
    if not allow or settings.audit_narrative is Toggle.OFF or settings.anthropic_api_key is None:
        return None
    return build_anthropic_narrator(
        settings.anthropic_api_key,
        settings.audit_model,
        prices=books.prices if books is not None else None,
        budget=books.budget if books is not None else None,
        on_budget_switch=books.on_budget_switch if books is not None else None,
        template=summarize,
        clock=wall.now,
        monotonic=_monotonic,
        base_url=settings.anthropic_base_url,
        timeout_s=settings.llm_timeout_seconds,
    )


def llm_enabled(settings: Settings, *, allow: bool) -> bool:
    if not allow or settings.llm_selection is Toggle.OFF:
        return False
    return any(
        _llm_key(settings, p) is not None for p in (settings.llm_selector_provider, settings.llm_fallback_provider)
    )


def _llm_key(settings: Settings, provider: LLMProvider) -> str | None:
    secret = {LLMProvider.GROQ: settings.groq_api_key, LLMProvider.ANTHROPIC: settings.anthropic_api_key}.get(provider)
    return secret.get_secret_value() if secret is not None else None


def build_llm_selector(
    settings: Settings, wall: Clock, repository: Repository, books: LLMBooks | None = None
) -> LLMSelector:
    """Groq first (by default), Anthropic as fallback; only providers with a key take part."""
    providers: list[SelectionProvider] = []
    for which in (settings.llm_selector_provider, settings.llm_fallback_provider):
        key = _llm_key(settings, which)
        if key is None:
            continue
        if which is LLMProvider.GROQ:
            providers.append(
                llm_clients.build_groq_provider(
                    key,
                    settings.groq_model,
                    settings.llm_timeout_seconds,
                    base_url=settings.groq_base_url,
                    clock=wall.now,
                    reasoning_effort=settings.groq_reasoning_effort,
                )
            )
        else:
            providers.append(
                llm_clients.build_anthropic_provider(
                    key,
                    settings.anthropic_model,
                    settings.llm_timeout_seconds,
                    base_url=settings.anthropic_base_url,
                    clock=wall.now,
                )
            )
    if books is None:
        books = llm_books(settings, kind="daemon", clock=wall, wall=wall, repository=repository, run_id="")
    return LLMSelector(
        providers,
        budget=books.budget,
        prices=books.prices,
        chunk_size=settings.llm_chunk_size,
        clock=wall.now,
        monotonic=_monotonic,
        blind=books.blind,
        ranking=books.ranking,
        on_budget_switch=books.on_budget_switch,
    )


def build_broker(settings: Settings, wall: Clock, limiter: SlidingWindowRateLimiter) -> Broker:
    """The configured broker. Alpaca is paper unless TRADING_MODE=live (the live opt-ins are checked by main.py);
    an ALPACA_TRADING_URL naming the other mode's endpoint is refused (:func:`check_trading_endpoint`)."""
    if settings.broker is BrokerName.SIMULATED:
        return build_simulated_broker(settings, started_at=wall.now())
    if not settings.has_alpaca_keys:
        raise MissingKeys("BROKER=alpaca needs ALPACA_API_KEY and ALPACA_SECRET_KEY")
    assert settings.alpaca_api_key is not None and settings.alpaca_secret_key is not None
    check_trading_endpoint(settings)
    return AlpacaBroker(
        settings.alpaca_api_key.get_secret_value(),
        settings.alpaca_secret_key.get_secret_value(),
        paper=settings.trading_mode is not TradingMode.LIVE,
        url_override=settings.alpaca_trading_url,
        timeout_s=settings.alpaca_timeout_seconds,
        limiter=limiter,
        clock=wall.now,
        max_retry_after_s=settings.alpaca_max_retry_wait_seconds,
    )


def commission_model(settings: Settings) -> PerShareCommission:
    """The simulated commission: COMMISSION_PER_SHARE, at least COMMISSION_MINIMUM per order, at most
    COMMISSION_MAX_PCT of the trade value (0: no cap). The defaults model Interactive Brokers' fixed pricing."""
    cap = Decimal(str(settings.commission_max_pct))
    return PerShareCommission(
        per_share=Decimal(str(settings.commission_per_share)),
        minimum=Decimal(str(settings.commission_minimum)),
        max_pct=cap if cap > 0 else None,
    )


def build_simulated_broker(settings: Settings, started_at: datetime | None = None) -> SimulatedBroker:
    return SimulatedBroker(
        Decimal(str(settings.initial_cash)),
        started_at=started_at,
        commission=commission_model(settings),
        slippage=BpsSlippage(Decimal(str(settings.slippage_bps))),
    )


def build_quote_source(
    settings: Settings, profile: RunProfile, limiter: SlidingWindowRateLimiter
) -> tuple[QuoteSource | None, str]:
    """The latest-quote source of the Risk agent's spread rule, or None with the reason the rule will record.

    Only the daemon trading or reading data on Alpaca (with keys) asks for live quotes; replays and backtests run
    on historical bars, for which no quote exists."""
    if not profile.live_quotes:
        return None, f"no live quote in a {profile.kind}: historical bars only"
    uses_alpaca = settings.data_provider is DataProviderName.ALPACA or settings.broker is BrokerName.ALPACA
    if not (uses_alpaca and settings.has_alpaca_keys):
        return None, "no live quote source: quotes come from Alpaca (DATA_PROVIDER or BROKER alpaca, with keys)"
    return _alpaca_data_client(settings, limiter, name="alpaca-quotes"), "no quote"


def risk_limits(settings: Settings) -> RiskLimits:
    return RiskLimits(
        risk_per_trade=settings.risk_per_trade,
        max_daily_loss=settings.max_daily_loss,
        min_confidence=settings.min_confidence,
        max_shares=settings.max_shares,
        stop_atr_multiple=settings.stop_atr_multiple,
        kelly_fraction=settings.kelly_fraction or None,
        reducing_size=settings.drawdown_reducing_size,
        pdt_guard=settings.pdt_guard,
        gap_guard=settings.gap_guard,
    )


def drawdown_rules(settings: Settings) -> DrawdownRules:
    """The drawdown lock and halt of the settings (``DRAWDOWN_*``; 0 switches one off)."""
    return DrawdownRules(
        lock=settings.drawdown_lock or None,
        lock_sessions=settings.drawdown_lock_sessions,
        reducing_sessions=settings.drawdown_reducing_sessions,
        halt=settings.drawdown_halt or None,
    )


@dataclass
class App:
    settings: Settings
    kind: str
    run_id: str
    engine: Engine
    repository: Repository
    clock: Clock
    wall_clock: Clock
    provider: BarProvider
    broker: Broker
    bus: EventBus
    orchestrator: Orchestrator
    calendar: MarketCalendar | None = None
    reconciler: Reconciler | None = None
    agents: dict[str, Any] = field(default_factory=dict)
    lock: DaemonLock | None = None
    notifier: Notifier | None = None  # NOTIFY_URLS' notifications (None: none configured, or not for this run)

    def close(self, status: str = "finished") -> None:
        try:
            if self.notifier is not None:  # what is still waiting goes out (bounded in time), every outcome recorded
                self.notifier.close()
            audit = self.agents.get(AgentName.AUDIT)
            if audit is not None:
                audit.flush()
            self.repository.finish_run(self.run_id, status=status, at=self.wall_clock.now())
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None
            self.engine.dispose()


def lock_guard(lock: DaemonLock, repository: Repository, run_id: str, wall: Clock) -> Callable[[], None]:
    """Checked before every daemon iteration: the database lock must still be this daemon's. A lock lost and taken
    again (nobody else held it) is logged and recorded as a ``daemon_lock`` breaker event and the iteration goes on;
    a lock another process now holds is recorded and raises :class:`DaemonLockLost`, before anything trades."""

    def check() -> None:
        try:
            note = lock.verify()
        except DaemonLockLost as exc:
            logger.error("{}", exc)
            event = {
                "name": "daemon_lock",
                "from_state": "held",
                "to_state": "lost",
                "reason": str(exc),
                "at": wall.now(),
            }
            try:
                repository.record_breaker_events(run_id, [event])
            except SQLAlchemyError as db_error:  # the lock loss is what stops the daemon; say the record failed too
                logger.error("could not record the lost daemon lock: {}", str(db_error).splitlines()[0])
            raise
        if note is not None:
            logger.warning("{}", note)
            event = {"name": "daemon_lock", "from_state": "lost", "to_state": "held", "reason": note, "at": wall.now()}
            repository.record_breaker_events(run_id, [event])

    return check


@dataclass
class _OpenedRun:
    """The run's storage and adapters, and its row in the runs table."""

    engine: Engine
    lock: DaemonLock | None
    repository: Repository
    limiter: SlidingWindowRateLimiter
    provider: BarProvider
    broker: Broker
    run_id: str


def _open_run(
    settings: Settings,
    profile: RunProfile,
    wall: Clock,
    calendar: MarketCalendar,
    *,
    provider: BarProvider | None,
    broker: Broker | None,
    limiter: SlidingWindowRateLimiter | None,
    take_lock: bool,
    create_db: bool,
) -> _OpenedRun:
    """Open the database, take the lock (runs a dead process left 'running' are marked killed), build the provider
    and the broker, and record the run row. Raises DatabaseUnavailable / DaemonAlreadyRunning before anything trades;
    on any failure here the lock is released and the engine disposed."""
    engine = open_database(
        settings.database_url,
        create=create_db,
        statement_timeout_s=settings.db_statement_timeout_seconds,
        lock_timeout_s=settings.db_lock_timeout_seconds,
        schema_cache=schema_cache_dir(settings.bar_cache_dir),
    )
    install_database_scrubber(engine, settings.secret_values)  # no configured secret reaches a table, whatever the path
    lock = DaemonLock(engine) if take_lock else None
    try:
        repository = Repository(engine)
        if lock is not None:
            lock.acquire()
            # every run holds the lock while it runs: a run still marked running now was killed (SIGKILL, power cut)
            killed = repository.mark_killed_runs(wall.now())
            if killed:
                logger.warning("runs left 'running' by a process that died, marked killed: {}", ", ".join(killed))
        limiter = limiter or SlidingWindowRateLimiter(settings.alpaca_rate_limit_per_minute, 60.0)
        provider = provider or build_provider(settings, calendar, limiter=limiter, now=wall.now)
        # replays and backtests always trade on the simulated broker; only the daemon uses BROKER
        broker = broker or (
            build_broker(settings, wall, limiter) if profile.live_broker else build_simulated_broker(settings)
        )
        run_id = new_run_id(profile.kind, wall.now())
        repository.create_run(
            run_id,
            kind=profile.kind,
            broker=broker.name,
            data_provider=provider.name,
            started_at=wall.now(),
            initial_cash=Decimal(str(settings.initial_cash)),
            symbols=settings.symbols,
            config=public_config(settings),
        )
    except BaseException:
        if lock is not None:
            lock.release()
        engine.dispose()
        raise
    return _OpenedRun(engine, lock, repository, limiter, provider, broker, run_id)


@dataclass
class _RestoredState:
    """What the run starts from: the ledger's fills, the broker's persisted account, the breakers (restored) and the
    Risk agent's saved state, all read under the run's state namespace."""

    namespace: str
    ledger_fills: list[Fill]
    broker_key: StateKey | None
    saved_risk: tuple[dict[str, Any], datetime] | None
    llm_breaker: ConsecutiveFailureBreaker
    breaker_events: list[BreakerEvent]
    broker_breaker: BackoffBreaker
    broker_events: list[BreakerEvent]


def _restore_state(
    settings: Settings, profile: RunProfile, run: _OpenedRun, *, clock: Clock, wall: Clock
) -> _RestoredState:
    """Resume the broker from the ledger or its persisted snapshot, and build the breakers from their saved state."""
    repository, broker = run.repository, run.broker
    ledger_fills = repository.broker_ledger(broker.name)[1] if profile.replay_ledger_fills else []
    if isinstance(broker, AlpacaBroker):
        orders, fills = repository.broker_ledger(broker.name)
        broker.resume(orders, fills)  # fills already recorded are not reported again after a restart
        logger.info("alpaca broker resumed from the ledger: {} orders, {} fills", len(orders), len(fills))

    # the offline daemon's simulated account survives restarts: its snapshot is persisted with every iteration
    broker_key = (
        StateKey.SIMULATED_BROKER if profile.persist_simulated_broker and isinstance(broker, PersistentBroker) else None
    )
    if broker_key is not None:
        saved_broker_state = repository.get_state(broker_key)
        if saved_broker_state is not None:
            try:
                cast(PersistentBroker, broker).restore(saved_broker_state[0])
                logger.info("simulated broker restored from the database (cash {})", saved_broker_state[0].get("cash"))
            except ValueError as exc:
                logger.warning("simulated broker state not restored ({}); starting from INITIAL_CASH", exc)

    breaker_events: list[BreakerEvent] = []
    llm_breaker = ConsecutiveFailureBreaker(
        "llm_selection",
        threshold=settings.llm_breaker_threshold,
        cooldown=timedelta(seconds=settings.llm_breaker_cooldown_seconds),
        clock=wall.now,
        on_transition=breaker_events.append,
    )
    # the daemon's state survives restarts; a replay or backtest starts from a clean state of its own
    namespace = profile.state_namespace(run.run_id)
    saved = repository.get_state(state_key(StateKey.LLM_BREAKER, namespace))
    if saved is not None:
        llm_breaker.restore(saved[0])
    saved_risk = repository.get_state(state_key(StateKey.RISK_STATE, namespace))
    broker_events: list[BreakerEvent] = []
    broker_breaker = BackoffBreaker(
        "broker",
        threshold=settings.broker_error_threshold,
        base=timedelta(seconds=settings.broker_backoff_seconds),
        max_backoff=timedelta(hours=1),
        clock=clock.now,
        on_transition=broker_events.append,
    )
    saved_broker = repository.get_state(state_key(StateKey.BROKER_BREAKER, namespace))
    if saved_broker is not None:
        broker_breaker.restore(saved_broker[0])
    return _RestoredState(
        namespace=namespace,
        ledger_fills=ledger_fills,
        broker_key=broker_key,
        saved_risk=saved_risk,
        llm_breaker=llm_breaker,
        breaker_events=breaker_events,
        broker_breaker=broker_breaker,
        broker_events=broker_events,
    )


@dataclass
class _Agents:
    data: DataAgent
    strategy: StrategyAgent
    quant: QuantAgent
    risk: RiskAgent
    execution: ExecutionAgent
    audit: AuditAgent
    reconciler: Reconciler | None

    def by_name(self) -> dict[str, Any]:
        return {
            AgentName.DATA: self.data,
            AgentName.STRATEGY: self.strategy,
            AgentName.QUANT: self.quant,
            AgentName.RISK: self.risk,
            AgentName.EXECUTION: self.execution,
            AgentName.AUDIT: self.audit,
        }


def _build_agents(
    settings: Settings,
    profile: RunProfile,
    run: _OpenedRun,
    state: _RestoredState,
    options: PipelineOptions,
    *,
    clock: Clock,
    wall: Clock,
    calendar: MarketCalendar,
    allow_llm: bool,
    notifier: Notifier | None = None,
) -> _Agents:
    """The six agents (and the daemon's reconciler) over the opened run and its restored state."""
    repository, broker, provider, limiter, run_id = run.repository, run.broker, run.provider, run.limiter, run.run_id
    namespace, broker_key, saved_risk = state.namespace, state.broker_key, state.saved_risk
    llm_breaker, breaker_events = state.llm_breaker, state.breaker_events
    broker_breaker, broker_events = state.broker_breaker, state.broker_events
    sizing, enforce_limits, audit_batch = options.sizing, options.enforce_limits, options.audit_batch
    routine_decisions, validate_sessions = options.routine_decisions, options.validate_sessions

    cache = FrameCache()
    registry = options.registry if options.registry is not None else build_registry(settings.strategy_overrides)
    selector = options.selector
    pinned = selector is None and settings.strategy != "auto"
    if selector is None:
        selector = FixedSelector(registry, settings.strategy) if pinned else DeterministicSelector(registry)
    books = llm_books(settings, kind=profile.kind, clock=clock, wall=wall, repository=repository, run_id=run_id)
    llm = (
        build_llm_selector(settings, wall, repository, books)
        if llm_enabled(settings, allow=allow_llm and not pinned)
        else None
    )
    if llm is not None:
        note_llm_run(books, settings)
    if llm is None:
        logger.info(
            "strategy selection: deterministic ({})",
            "LLM_SELECTION=off"
            if settings.llm_selection is Toggle.OFF
            else ("no LLM in replays/backtests" if not allow_llm else "no GROQ_API_KEY or ANTHROPIC_API_KEY"),
        )
    else:
        logger.info(
            "strategy selection: LLM ({}), deterministic fallback",
            ", ".join(f"{p.name}:{p.model}" for p in llm._providers),
        )
    min_history = min(s.min_history for s in registry.values())

    data_agent = DataAgent(
        provider,
        settings.symbols,
        min_history=min_history,
        calendar=calendar if validate_sessions else None,
        gap_sessions=settings.data_gap_sessions,
        routine_decisions=routine_decisions,
    )
    strategy_agent = StrategyAgent(
        registry,
        selector,
        benchmark_symbol=settings.benchmark_symbol,
        cache=cache,
        llm=llm,
        llm_breaker=llm_breaker if llm is not None else None,
        breaker_events=breaker_events,
        shadow=settings.shadow_ledger,
        routine_decisions=routine_decisions,
    )
    quant_agent = QuantAgent(
        registry, cache=cache, benchmark_symbol=settings.benchmark_symbol, routine_decisions=routine_decisions
    )
    limits = risk_limits(settings)
    read_model = ReadModel.from_ledger(repository, run_id)  # what the agents read about the run, kept by the runtime
    audit_agent = AuditAgent(
        repository,
        broker,
        wall,
        run_id,
        state=lambda: {
            state_key(StateKey.LLM_BREAKER, namespace): llm_breaker.snapshot(),
            state_key(StateKey.RISK_STATE, namespace): risk_agent.snapshot(),
            state_key(StateKey.BROKER_BREAKER, namespace): broker_breaker.snapshot(),
            **(
                {broker_key: cast(PersistentBroker, broker).snapshot(history=SIMULATED_SNAPSHOT_HISTORY)}
                if broker_key is not None
                else {}
            ),
        },
        heartbeat_key=profile.heartbeat_key,
        narrator=build_narrator(settings, wall, allow=allow_llm, books=books),
        batch_size=audit_batch,
        on_record=read_model.observe if notifier is None else _each(read_model.observe, notifier.observe),
    )
    quote_source, no_quotes_reason = build_quote_source(settings, profile, limiter)
    logger.info(
        "spread rule: {}",
        "live quotes from Alpaca" if quote_source is not None else f"not applicable ({no_quotes_reason})",
    )
    risk_agent = RiskAgent(
        broker,
        limits,
        equity_history=read_model.recent_equity,
        clock=clock.now,
        sectors=load_sector_map(),  # config/sectors.json, validated (a malformed or missing file stops start-up)
        atr_period=risk_features.ATR_PERIOD,
        data_quality_min=settings.data_quality_min,
        drawdown=drawdown_rules(settings),
        saved_state=saved_risk[0] if saved_risk is not None else None,
        sizing=sizing,
        enforce_limits=enforce_limits,
        positions=PositionManager(time_stop_sessions=settings.time_stop_sessions or None),
        cache=cache,
        routine_decisions=routine_decisions,
        quotes=quote_source,
        no_quotes_reason=no_quotes_reason,
    )
    reconciler = (
        Reconciler(
            repository,
            broker.name,
            run_id,
            parent_of=getattr(broker, "parent_of", None),
            on_found=notifier.discrepancies if notifier is not None else None,
        )
        if profile.reconcile
        else None
    )
    position_manager = PositionManager(
        trail_atr_multiple=settings.trail_atr_multiple or None,
        trail_percent=settings.trail_percent or None,
        time_stop_sessions=settings.time_stop_sessions or None,
    )
    risk_agent.realized.apply(state.ledger_fills)  # the daemon's trade history survives restarts
    execution_agent = ExecutionAgent(
        broker,
        order_prefix=profile.client_order_prefix(settings.trading_mode.value, run_id),
        breaker=broker_breaker,
        breaker_events=broker_events,
        reconciler=reconciler,
        positions=position_manager,
        # the trailing stops' ATR: the Risk agent's array, memoised once per frame in the shared cache
        atr=partial(risk_features.atr_at, cache, period=risk_features.ATR_PERIOD),
        routine_decisions=routine_decisions,
        # the daemon writes every order before submitting it and resolves the ones in doubt (start and iterations)
        intents=repository if profile.write_order_intents else None,
        run_id=run_id,
    )
    return _Agents(data_agent, strategy_agent, quant_agent, risk_agent, execution_agent, audit_agent, reconciler)


def _each(*callbacks: Callable[[Any], None]) -> Callable[[Any], None]:
    """One callback calling each of ``callbacks`` in turn."""

    def call(value: Any) -> None:
        for callback in callbacks:
            callback(value)

    return call


def _build_notifier(
    settings: Settings, profile: RunProfile, run: _OpenedRun, *, wall: Clock, calendar: MarketCalendar
) -> Notifier | None:
    """NOTIFY_URLS' notifier for a run whose profile notifies (None otherwise), knowing the broker's orders still
    working (to classify their fills and count them in the session summary)."""
    if not profile.notify or not settings.notify_url_list:
        return None
    orders = run.repository.broker_ledger(run.broker.name)[0] if profile.live_broker else []
    return build_notifier(
        settings,
        clock=wall.now,
        repository=run.repository,
        run_id=run.run_id,
        calendar=calendar,
        one_per_session=not profile.live_broker,
        orders=[o for o in orders if o.status not in TERMINAL_ORDER_STATUSES],
    )


def _wire_bus(settings: Settings, agents: _Agents) -> EventBus:
    """One subscription per hop of the pipeline (Data -> Strategy -> Quant -> Risk -> Execution -> Audit)."""
    data_agent, strategy_agent, quant_agent = agents.data, agents.strategy, agents.quant
    risk_agent, execution_agent, audit_agent = agents.risk, agents.execution, agents.audit

    bus = EventBus(settings.bus_mode.value)
    bus.subscribe(IterationStarted, data_agent.on_iteration, "data.on_iteration")
    bus.subscribe(DataReady, execution_agent.on_data, "execution.on_data")
    bus.subscribe(DataReady, strategy_agent.on_data, "strategy.on_data")
    bus.subscribe(SignalsReady, quant_agent.on_signals, "quant.on_signals")
    bus.subscribe(ValidatedReady, risk_agent.on_validated, "risk.on_validated")
    bus.subscribe(ApprovedReady, execution_agent.on_approved, "execution.on_approved")
    bus.subscribe(ExecutedReady, audit_agent.on_executed, "audit.on_executed")
    bus.subscribe(ExecutedReady, risk_agent.on_executed, "risk.on_executed")
    return bus


def build_app(
    settings: Settings,
    *,
    profile: RunProfile,
    clock: Clock,
    wall_clock: Clock | None = None,
    provider: BarProvider | None = None,
    broker: Broker | None = None,
    take_lock: bool = True,
    calendar: MarketCalendar | None = None,
    allow_llm: bool = True,
    limiter: SlidingWindowRateLimiter | None = None,
    options: PipelineOptions = PIPELINE_DEFAULTS,
    create_db: bool = True,
) -> App:
    """Wire everything for a run of ``profile`` (``DAEMON``, ``REPLAY``, ``BACKTEST`` or ``RunProfile.for_kind``):
    open the run, restore its state, build the agents, wire the bus. Raises DatabaseUnavailable / DaemonAlreadyRunning
    before anything trades.

    ``options``: the pipeline's knobs (:class:`PipelineOptions`; backtests turn them); ``create_db=False``: a SQLite
    database file that does not exist is an error (``DatabaseMissing``) rather than a new, empty ledger."""
    wall = wall_clock or LiveClock()
    calendar = calendar or MarketCalendar()
    run = _open_run(
        settings,
        profile,
        wall,
        calendar,
        provider=provider,
        broker=broker,
        limiter=limiter,
        take_lock=take_lock,
        create_db=create_db,
    )
    state = _restore_state(settings, profile, run, clock=clock, wall=wall)
    # the daemon trades the promoted parameter versions, re-read before every iteration (core.runtime.promoted)
    promoted = None
    if profile.promoted_params and options.registry is None:
        promoted = PromotedParams(run.engine, run.repository, run.run_id, wall, settings.strategy_overrides)
        options = replace(options, registry=promoted.registry)
    notifier = _build_notifier(settings, profile, run, wall=wall, calendar=calendar)
    agents = _build_agents(
        settings,
        profile,
        run,
        state,
        options,
        clock=clock,
        wall=wall,
        calendar=calendar,
        allow_llm=allow_llm,
        notifier=notifier,
    )
    bus = _wire_bus(settings, agents)
    guard = (
        lock_guard(run.lock, run.repository, run.run_id, wall) if run.lock is not None and profile.guard_lock else None
    )
    if promoted is not None:
        guard = chain_guards(guard, promoted.before_iteration)
    orchestrator = Orchestrator(
        bus=bus,
        clock=clock,
        audit=agents.audit,
        execution=agents.execution,
        run_id=run.run_id,
        deadline_s=profile.deadline_s(settings.iteration_deadline_seconds),
        guard=guard,
    )
    logger.info(
        "run {} ({}): {} symbols, data {}, broker {}, bus {}, database {}",
        run.run_id,
        profile.kind,
        len(settings.symbols),
        run.provider.name,
        run.broker.name,
        bus.mode,
        run.engine.url.render_as_string(hide_password=True),
    )
    return App(
        settings=settings,
        kind=profile.kind,
        run_id=run.run_id,
        engine=run.engine,
        repository=run.repository,
        clock=clock,
        wall_clock=wall,
        provider=run.provider,
        broker=run.broker,
        bus=bus,
        orchestrator=orchestrator,
        calendar=calendar,
        reconciler=agents.reconciler,
        agents=agents.by_name(),
        lock=run.lock,
        notifier=notifier,
    )


def replay_sessions(calendar: MarketCalendar, start: date, end: date) -> list[datetime]:
    """The NYSE session closes (UTC, early closes honoured) from ``start`` to ``end`` inclusive."""
    return [calendar.session(day).close_utc for day in calendar.sessions_between(start, end)]


def simulated_clock_for(sessions: Sequence[datetime]) -> SimulatedClock:
    if not sessions:
        raise ValueError("no sessions to replay in the requested range")
    return SimulatedClock(sessions[0])
