"""Composition root: builds clock, bus, provider, broker, repository and the six agents from the settings.

``main.py`` and the end-to-end tests both go through :func:`build_app`, so the tests exercise the real wiring.
"""

from __future__ import annotations

import json
import secrets as _secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic as _monotonic
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from zoneinfo import ZoneInfo

from loguru import logger
from sqlalchemy import Engine

from agents.audit_agent import AuditAgent, summarize
from agents.data_agent import DataAgent
from agents.execution_agent import ExecutionAgent
from agents.quant_agent import QuantAgent
from agents.risk_agent import RiskAgent
from agents.strategy_agent import StrategyAgent
from config.settings import PROJECT_ROOT, BrokerName, DataFallback, DataProviderName, LLMProvider, Settings, Toggle, TradingMode
from core.brokers.alpaca import AlpacaBroker
from core.brokers.base import Broker
from core.brokers.costs import BpsSlippage, PerShareCommission
from core.brokers.simulated import SimulatedBroker
from core.bus import EventBus
from core.calendar import MarketCalendar
from core.clock import Clock, LiveClock, SimulatedClock
from core.data.base import BarProvider
from core.data.files import FileProvider
from core.data.synthetic import SyntheticProvider
from core.events import ApprovedReady, DataReady, ExecutedReady, IterationStarted, SignalsReady, ValidatedReady
from core.frame_cache import FrameCache
from core.orchestrator import Orchestrator
from core.positions import PositionManager
from core.reconcile import Reconciler
from core.persistence.db import DaemonLock, open_database, safe_url
from core.persistence.repository import Repository
from core.data.alpaca import AlpacaBarProvider
from core.data.cache import DiskBarCache
from core.data.chain import FallbackChain
from core.data.memo import MemoizingProvider
from core.narrative import Narrator, build_anthropic_narrator
import core.llm as llm_clients  # the SDK clients load when a provider is built (see core.llm)
from core.llm import DailyBudget, LLMSelector, PriceTable
from core.risk import RiskLimits
from utils.circuit_breaker import BackoffBreaker, BreakerEvent, ConsecutiveFailureBreaker
from utils.rate_limiter import SlidingWindowRateLimiter
from strategies.registry import build_registry
from strategies.selector import DeterministicSelector, FixedSelector

NEW_YORK = ZoneInfo("America/New_York")
SECTORS_FILE = PROJECT_ROOT / "config" / "sectors.json"


def session_close_utc(day: date) -> datetime:
    """16:00 New York time on ``day``, in UTC (the decision time of a daily iteration)."""
    return datetime.combine(day, time(16, 0), tzinfo=NEW_YORK).astimezone(UTC)


def load_sectors(path: Path = SECTORS_FILE) -> dict[str, str]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "sectors" in data and isinstance(data["sectors"], dict):
        data = data["sectors"]
    return {str(k).upper(): str(v) for k, v in data.items() if isinstance(v, str)}


def new_run_id(kind: str, at: datetime) -> str:
    return f"{kind}-{at:%Y%m%dT%H%M%S}-{_secrets.token_hex(3)}"


def public_config(settings: Settings) -> dict[str, Any]:
    """Settings without secrets, for the run row."""
    data = settings.model_dump(mode="json", exclude={"alpaca_api_key", "alpaca_secret_key", "groq_api_key", "anthropic_api_key"})
    data["database_url"] = safe_url(settings.database_url)  # a PostgreSQL password must not land in the runs table
    data["has_alpaca_keys"] = settings.has_alpaca_keys
    return data


SYNTHETIC_START = date(2015, 1, 2)


class MissingKeys(ValueError):
    """A configured component needs API keys that are not set."""


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
    assert settings.alpaca_api_key is not None and settings.alpaca_secret_key is not None
    alpaca = AlpacaBarProvider(
        settings.alpaca_api_key.get_secret_value(),
        settings.alpaca_secret_key.get_secret_value(),
        feed=settings.alpaca_data_feed,
        timeout_s=settings.alpaca_timeout_seconds,
        url_override=settings.alpaca_data_url,
        limiter=limiter or SlidingWindowRateLimiter(settings.alpaca_rate_limit_per_minute, 60.0),
        cache=DiskBarCache(settings.bar_cache_dir),
        default_lookback=timedelta(days=int(settings.history_bars * 7 / 5) + 10),
        is_session=calendar.is_session,
    )
    provider: BarProvider = alpaca
    if settings.data_fallback is DataFallback.FILES:
        provider = FallbackChain([alpaca, FileProvider(settings.data_dir)])
    if settings.bar_cache_ttl_seconds > 0:
        provider = MemoizingProvider(
            provider, ttl=timedelta(seconds=settings.bar_cache_ttl_seconds), now=now or LiveClock().now, calendar=calendar
        )
    return provider


def build_narrator(settings: Settings, wall: Clock, *, allow: bool) -> Narrator | None:
    """Anthropic narrates audit reports when configured (never in replays unless asked); otherwise the template."""
    if not allow or settings.audit_narrative is Toggle.OFF or settings.anthropic_api_key is None:
        return None
    return build_anthropic_narrator(
        settings.anthropic_api_key,
        settings.audit_model,
        template=summarize,
        clock=wall.now,
        monotonic=_monotonic,
        base_url=settings.anthropic_base_url,
        timeout_s=settings.llm_timeout_seconds,
    )


def llm_enabled(settings: Settings, *, allow: bool) -> bool:
    if not allow or settings.llm_selection is Toggle.OFF:
        return False
    return any(_llm_key(settings, p) is not None for p in (settings.llm_selector_provider, settings.llm_fallback_provider))


def _llm_key(settings: Settings, provider: LLMProvider) -> str | None:
    secret = {LLMProvider.GROQ: settings.groq_api_key, LLMProvider.ANTHROPIC: settings.anthropic_api_key}.get(provider)
    return secret.get_secret_value() if secret is not None else None


def build_llm_selector(settings: Settings, wall: Clock, repository: Repository) -> LLMSelector:
    """Groq first (by default), Anthropic as fallback; only providers with a key take part."""
    providers = []
    for which in (settings.llm_selector_provider, settings.llm_fallback_provider):
        key = _llm_key(settings, which)
        if key is None:
            continue
        if which is LLMProvider.GROQ:
            providers.append(llm_clients.build_groq_provider(key, settings.groq_model, settings.llm_timeout_seconds, base_url=settings.groq_base_url, clock=wall.now))
        else:
            providers.append(
                llm_clients.build_anthropic_provider(key, settings.anthropic_model, settings.llm_timeout_seconds, base_url=settings.anthropic_base_url, clock=wall.now)
            )
    budget = DailyBudget(settings.llm_daily_max_calls, Decimal(str(settings.llm_daily_max_usd)), wall.now)
    now = wall.now()
    calls, usd = repository.llm_usage_since(datetime.combine(now.date(), time.min, tzinfo=UTC))
    budget.restore(calls, usd)
    return LLMSelector(
        providers, budget=budget, prices=PriceTable.load(), chunk_size=settings.llm_chunk_size, clock=wall.now, monotonic=_monotonic
    )


def build_broker(settings: Settings, wall: Clock, limiter: SlidingWindowRateLimiter) -> Broker:
    """The configured broker. Alpaca is paper unless TRADING_MODE=live (the live opt-in is checked by main.py)."""
    if settings.broker is BrokerName.SIMULATED:
        return build_simulated_broker(settings, started_at=wall.now())
    if not settings.has_alpaca_keys:
        raise MissingKeys("BROKER=alpaca needs ALPACA_API_KEY and ALPACA_SECRET_KEY")
    assert settings.alpaca_api_key is not None and settings.alpaca_secret_key is not None
    return AlpacaBroker(
        settings.alpaca_api_key.get_secret_value(),
        settings.alpaca_secret_key.get_secret_value(),
        paper=settings.trading_mode is not TradingMode.LIVE,
        url_override=settings.alpaca_trading_url,
        timeout_s=settings.alpaca_timeout_seconds,
        limiter=limiter,
        clock=wall.now,
    )


def build_simulated_broker(settings: Settings, started_at: datetime | None = None) -> SimulatedBroker:
    return SimulatedBroker(
        Decimal(str(settings.initial_cash)),
        started_at=started_at,
        commission=PerShareCommission(
            per_share=Decimal(str(settings.commission_per_share)), minimum=Decimal(str(settings.commission_minimum))
        ),
        slippage=BpsSlippage(Decimal(str(settings.slippage_bps))),
    )


def risk_limits(settings: Settings) -> RiskLimits:
    return RiskLimits(
        risk_per_trade=settings.risk_per_trade,
        max_daily_loss=settings.max_daily_loss,
        min_confidence=settings.min_confidence,
        max_shares=settings.max_shares,
        stop_atr_multiple=settings.stop_atr_multiple,
        kelly_fraction=settings.kelly_fraction or None,
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

    def close(self, status: str = "finished") -> None:
        try:
            audit = self.agents.get("audit")
            if audit is not None:
                audit.flush()
            self.repository.finish_run(self.run_id, status=status, at=self.wall_clock.now())
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None
            self.engine.dispose()


def build_app(
    settings: Settings,
    *,
    kind: str,
    clock: Clock,
    wall_clock: Clock | None = None,
    provider: BarProvider | None = None,
    broker: Broker | None = None,
    take_lock: bool = True,
    calendar: MarketCalendar | None = None,
    allow_llm: bool = True,
    limiter: SlidingWindowRateLimiter | None = None,
    sizing: str = "risk",
    enforce_limits: bool = True,
    selector: Any = None,
    registry: Mapping[str, Any] | None = None,
    audit_batch: int = 1,
    routine_decisions: bool = True,
    validate_sessions: bool = True,
) -> App:
    """``selector``/``registry``: override the deterministic selector and the strategy registry (backtests pin a
    strategy); ``audit_batch``: iterations per database transaction (1 for the daemon; more for backtests);
    ``routine_decisions=False`` records only the decisions that carry information (no "data ok", HOLD, "skip" or
    "no order" rows for every symbol of every iteration), as backtests do by default; ``validate_sessions=False``: the
    Data agent checks bars without the exchange calendar (no off-session or missing-session rule), for a backtest whose
    sessions are the data's own dates (``backtest --calendar data``)."""
    """Wire everything. Raises DatabaseUnavailable / DaemonAlreadyRunning before anything trades."""
    wall = wall_clock or LiveClock()
    calendar = calendar or MarketCalendar()
    engine = open_database(settings.database_url)
    lock = DaemonLock(engine) if take_lock else None
    try:
        if lock is not None:
            lock.acquire()
        repository = Repository(engine)
        limiter = limiter or SlidingWindowRateLimiter(settings.alpaca_rate_limit_per_minute, 60.0)
        provider = provider or build_provider(settings, calendar, limiter=limiter, now=wall.now)
        # replays and backtests always trade on the simulated broker; only the daemon uses BROKER
        broker = broker or (build_broker(settings, wall, limiter) if kind == "daemon" else build_simulated_broker(settings))
        run_id = new_run_id(kind, wall.now())
        repository.create_run(
            run_id,
            kind=kind,
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

    ledger_fills = repository.broker_ledger(broker.name)[1] if kind == "daemon" else []
    if isinstance(broker, AlpacaBroker):
        orders, fills = repository.broker_ledger(broker.name)
        broker.resume(orders, fills)  # fills already recorded are not reported again after a restart
        logger.info("alpaca broker resumed from the ledger: {} orders, {} fills", len(orders), len(fills))

    # the offline daemon's simulated account survives restarts: its snapshot is persisted with every iteration
    broker_key = "broker:simulated" if kind == "daemon" and isinstance(broker, SimulatedBroker) else None
    if broker_key is not None:
        saved_broker_state = repository.get_state(broker_key)
        if saved_broker_state is not None:
            try:
                broker.restore(saved_broker_state[0])  # type: ignore[union-attr]
                logger.info("simulated broker restored from the database (cash {})", saved_broker_state[0].get("cash"))
            except ValueError as exc:
                logger.warning("simulated broker state not restored ({}); starting from INITIAL_CASH", exc)

    cache = FrameCache()
    registry = registry if registry is not None else build_registry(settings.strategy_overrides)
    pinned = selector is None and settings.strategy != "auto"
    if selector is None:
        selector = FixedSelector(registry, settings.strategy) if pinned else DeterministicSelector(registry)
    llm = build_llm_selector(settings, wall, repository) if llm_enabled(settings, allow=allow_llm and not pinned) else None
    breaker_events: list[BreakerEvent] = []
    llm_breaker = ConsecutiveFailureBreaker(
        "llm_selection",
        threshold=settings.llm_breaker_threshold,
        cooldown=timedelta(seconds=settings.llm_breaker_cooldown_seconds),
        clock=wall.now,
        on_transition=breaker_events.append,
    )
    # the daemon's state survives restarts; a replay or backtest starts from a clean state of its own
    namespace = "" if kind == "daemon" else f"{run_id}:"
    saved = repository.get_state(f"{namespace}breaker:llm_selection")
    if saved is not None:
        llm_breaker.restore(saved[0])
    saved_risk = repository.get_state(f"{namespace}risk:state")
    if llm is None:
        logger.info("strategy selection: deterministic ({})", "LLM_SELECTION=off" if settings.llm_selection is Toggle.OFF else ("no LLM in replays/backtests" if not allow_llm else "no GROQ_API_KEY or ANTHROPIC_API_KEY"))
    else:
        logger.info("strategy selection: LLM ({}), deterministic fallback", ", ".join(f"{p.name}:{p.model}" for p in llm._providers))
    min_history = min(s.min_history for s in registry.values())

    data_agent = DataAgent(
        provider, settings.symbols, min_history=min_history, calendar=calendar if validate_sessions else None, routine_decisions=routine_decisions
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
    quant_agent = QuantAgent(strategy_agent, cache=cache, routine_decisions=routine_decisions)
    limits = risk_limits(settings)
    audit_agent = AuditAgent(
        repository,
        broker,
        wall,
        run_id,
        state=lambda: {
            f"{namespace}breaker:llm_selection": llm_breaker.snapshot(),
            f"{namespace}risk:state": risk_agent.snapshot(),
            f"{namespace}breaker:broker": broker_breaker.snapshot(),
            **({broker_key: broker.snapshot()} if broker_key is not None else {}),  # type: ignore[union-attr]
        },
        heartbeat_key="heartbeat" if kind == "daemon" else None,
        narrator=build_narrator(settings, wall, allow=allow_llm),
        batch_size=audit_batch,
    )
    risk_agent = RiskAgent(
        broker,
        limits,
        equity_history=lambda: list(audit_agent.recent_equity),
        clock=clock.now,
        sectors=load_sectors(),
        data_quality_min=settings.data_quality_min,
        drawdown_halt=settings.drawdown_halt,
        saved_state=saved_risk[0] if saved_risk is not None else None,
        sizing=sizing,
        enforce_limits=enforce_limits,
        positions=PositionManager(time_stop_sessions=settings.time_stop_sessions or None),
        cache=cache,
        routine_decisions=routine_decisions,
    )
    broker_events: list[BreakerEvent] = []
    broker_breaker = BackoffBreaker(
        "broker",
        threshold=settings.broker_error_threshold,
        base=timedelta(seconds=settings.broker_backoff_seconds),
        max_backoff=timedelta(hours=1),
        clock=clock.now,
        on_transition=broker_events.append,
    )
    saved_broker = repository.get_state(f"{namespace}breaker:broker")
    if saved_broker is not None:
        broker_breaker.restore(saved_broker[0])
    reconciler = Reconciler(repository, broker.name, run_id, parent_of=getattr(broker, "parent_of", None)) if kind == "daemon" else None
    position_manager = PositionManager(
        trail_atr_multiple=settings.trail_atr_multiple or None,
        trail_percent=settings.trail_percent or None,
        time_stop_sessions=settings.time_stop_sessions or None,
    )
    risk_agent.realized.apply(ledger_fills)  # the daemon's trade history survives restarts
    execution_agent = ExecutionAgent(
        broker,
        order_prefix=settings.trading_mode.value if kind == "daemon" else run_id,
        breaker=broker_breaker,
        breaker_events=broker_events,
        reconciler=reconciler,
        positions=position_manager,
        atr=risk_agent.atr_at,
        routine_decisions=routine_decisions,
        # the daemon writes every order before submitting it and resolves the ones in doubt (start and iterations)
        intents=repository if kind == "daemon" else None,
        run_id=run_id,
    )

    bus = EventBus(settings.bus_mode.value)
    bus.subscribe(IterationStarted, data_agent.on_iteration, "data.on_iteration")
    bus.subscribe(DataReady, execution_agent.on_data, "execution.on_data")
    bus.subscribe(DataReady, strategy_agent.on_data, "strategy.on_data")
    bus.subscribe(SignalsReady, quant_agent.on_signals, "quant.on_signals")
    bus.subscribe(ValidatedReady, risk_agent.on_validated, "risk.on_validated")
    bus.subscribe(ApprovedReady, execution_agent.on_approved, "execution.on_approved")
    bus.subscribe(ExecutedReady, audit_agent.on_executed, "audit.on_executed")
    bus.subscribe(ExecutedReady, risk_agent.on_executed, "risk.on_executed")

    orchestrator = Orchestrator(bus=bus, clock=clock, audit=audit_agent, execution=execution_agent, run_id=run_id)
    logger.info(
        "run {} ({}): {} symbols, data {}, broker {}, bus {}, database {}",
        run_id,
        kind,
        len(settings.symbols),
        provider.name,
        broker.name,
        bus.mode,
        engine.url.render_as_string(hide_password=True),
    )
    return App(
        settings=settings,
        kind=kind,
        run_id=run_id,
        engine=engine,
        repository=repository,
        clock=clock,
        wall_clock=wall,
        provider=provider,
        broker=broker,
        bus=bus,
        orchestrator=orchestrator,
        calendar=calendar,
        reconciler=reconciler,
        agents={
            "data": data_agent,
            "strategy": strategy_agent,
            "quant": quant_agent,
            "risk": risk_agent,
            "execution": execution_agent,
            "audit": audit_agent,
        },
        lock=lock,
    )


def replay_sessions(calendar: MarketCalendar, start: date, end: date) -> list[datetime]:
    """The NYSE session closes (UTC, early closes honoured) from ``start`` to ``end`` inclusive."""
    return [calendar.session(day).close_utc for day in calendar.sessions_between(start, end)]


def simulated_clock_for(sessions: Sequence[datetime]) -> SimulatedClock:
    if not sessions:
        raise ValueError("no sessions to replay in the requested range")
    return SimulatedClock(sessions[0])
