"""Typed settings from the environment and `.env`, validated at start-up.

Every field maps to an upper-case environment variable of the same name (``RISK_PER_TRADE`` → ``risk_per_trade``).
A bad value raises :class:`SettingsError` whose message names the variable, before anything trades.
``.env.example`` documents every setting; ``tests/config/test_settings.py`` checks that the two stay in step.
"""

from __future__ import annotations

import base64
import enum
from pathlib import Path
from collections.abc import Iterable
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from core.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_DATA_DIR = PROJECT_ROOT / "data" / "daily"
DEFAULT_DB_PATH = PROJECT_ROOT / "var" / "trading.db"


class TradingMode(enum.StrEnum):
    PAPER = "paper"
    LIVE = "live"


class DataProviderName(enum.StrEnum):
    FILES = "files"
    SYNTHETIC = "synthetic"
    ALPACA = "alpaca"


class BusMode(enum.StrEnum):
    ASYNC = "async"
    SYNC = "sync"


class LLMProvider(enum.StrEnum):
    GROQ = "groq"
    ANTHROPIC = "anthropic"
    NONE = "none"


class BrokerName(enum.StrEnum):
    ALPACA = "alpaca"
    SIMULATED = "simulated"


class Schedule(enum.StrEnum):
    SESSION = "session"
    INTERVAL = "interval"


class DataFallback(enum.StrEnum):
    NONE = "none"
    FILES = "files"


class Toggle(enum.StrEnum):
    AUTO = "auto"
    OFF = "off"


class SettingsError(ConfigurationError, ValueError):
    """Invalid configuration; the message names the environment variable(s) at fault."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        case_sensitive=False,
        validate_default=True,
        allow_inf_nan=False,  # INITIAL_CASH=inf, a NaN threshold...: refused at start-up, not crashed on later
    )

    # --- universe and loop -------------------------------------------------------------------------
    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["AAPL", "AIG", "BAC", "IBM", "IWM", "SPY"],
        description="Comma-separated symbols traded every iteration.",
    )
    schedule: Schedule = Field(
        Schedule.SESSION,
        description="session: once per NYSE session at RUN_AT_MINUTES_AFTER_OPEN; interval: every LOOP_INTERVAL_SECONDS.",
    )
    run_at_minutes_after_open: int = Field(
        15, ge=0, le=390, description="Minutes after the session open when the daily iteration runs."
    )
    loop_interval_seconds: int = Field(
        86_400, ge=1, le=7 * 86_400, description="Seconds between iterations with SCHEDULE=interval."
    )
    iteration_deadline_seconds: float = Field(
        300.0,
        ge=1,
        le=3600,
        description="An iteration's Alpaca requests, retries and waits stop at this deadline; the iteration is then recorded degraded.",
    )
    history_bars: int = Field(
        300, ge=50, le=5000, description="Daily bars fetched per symbol on a cold start (Alpaca)."
    )
    benchmark_symbol: str = Field("SPY", min_length=1, description="Benchmark for relative-strength strategies.")
    strategy: str = Field(
        "auto",
        description="auto: choose a strategy per symbol (LLM or deterministic); or one registered name for every symbol.",
    )
    strategy_params: str = Field(
        "{}", description='JSON overrides of strategy parameters, e.g. {"trend_following": {"fast": 20}}.'
    )
    shadow_ledger: bool = Field(True, description="Record what every strategy would have signalled each iteration.")
    bus_mode: BusMode = Field(BusMode.ASYNC, description="async (concurrent fan-out) or sync (sequential dispatch).")

    # --- trading mode --------------------------------------------------------------------------------
    trading_mode: TradingMode = Field(TradingMode.PAPER, description="paper (default) or live.")
    live_allowed: bool = Field(False, description="Second opt-in required for live trading.")
    broker: BrokerName = Field(
        BrokerName.ALPACA, description="alpaca (paper unless live is fully opted in) or simulated."
    )
    initial_cash: float = Field(100_000.0, gt=0, le=1e12, description="Starting cash of the simulated broker.")
    commission_per_share: float = Field(
        0.005,
        ge=0,
        le=10,
        description="Simulated commission per share (USD); the defaults model Interactive Brokers' fixed pricing (Alpaca charges none: set the three to 0).",
    )
    commission_minimum: float = Field(1.0, ge=0, le=10_000, description="Simulated minimum commission per order (USD).")
    commission_max_pct: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="Simulated commission cap as a fraction of the trade value (0.01 = 1%; 0 = no cap).",
    )
    slippage_bps: float = Field(5.0, ge=0, le=1000, description="Simulated slippage in basis points.")

    # --- data ----------------------------------------------------------------------------------------
    data_provider: DataProviderName = Field(DataProviderName.FILES, description="files, synthetic or alpaca.")
    data_dir: Path = Field(BUNDLED_DATA_DIR, description="Directory of SYMBOL.csv/.parquet files.")
    synthetic_seed: int = Field(7, ge=0, le=2**63 - 1, description="Seed of the synthetic data provider.")
    data_fallback: DataFallback = Field(
        DataFallback.NONE, description="Provider tried for symbols Alpaca could not serve: none or files (DATA_DIR)."
    )
    bar_cache_dir: Path = Field(PROJECT_ROOT / "var" / "bars", description="On-disk Parquet cache of Alpaca bars.")
    bar_cache_ttl_seconds: int = Field(300, ge=0, le=86_400, description="In-memory cache lifetime of fetched bars.")
    alpaca_data_feed: str = Field("iex", pattern="^(iex|sip)$", description="Alpaca bars feed: iex (free) or sip.")
    alpaca_data_url: str | None = Field(None, description="Override of Alpaca's market-data base URL (proxies, tests).")
    alpaca_trading_url: str | None = Field(
        None,
        description="Override of Alpaca's trading base URL (proxies, tests); it must not name the other mode's endpoint, and the account behind it must match TRADING_MODE.",
    )
    alpaca_trade_stream: bool = Field(
        True,
        description="Follow Alpaca's trade-updates stream while the daemon runs (BROKER=alpaca): fills, cancels and rejections are recorded as they happen; the per-iteration sync stays the safety net.",
    )
    alpaca_stream_url: str | None = Field(
        None,
        description="Override of Alpaca's trade-updates websocket URL (ws:// or wss://); default: /stream on ALPACA_TRADING_URL's host, else Alpaca's.",
    )
    alpaca_timeout_seconds: float = Field(10.0, gt=0, le=120, description="Timeout of every Alpaca HTTP request.")
    alpaca_rate_limit_per_minute: int = Field(
        200, ge=1, le=10_000, description="Requests per minute shared by all Alpaca calls."
    )
    alpaca_max_retry_wait_seconds: float = Field(
        60.0,
        gt=0,
        le=600,
        description="Longest single wait before an Alpaca retry (a 429's Retry-After or a back-off above it is capped).",
    )

    # --- persistence and logging ---------------------------------------------------------------------
    database_url: str = Field(f"sqlite:///{DEFAULT_DB_PATH}", description="SQLAlchemy URL (sqlite or postgresql).")
    db_statement_timeout_seconds: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="PostgreSQL statement_timeout of every connection: no query or write waits longer.",
    )
    db_lock_timeout_seconds: float = Field(
        10.0,
        ge=1,
        le=600,
        description="Longest wait for a table/row lock another session holds (PostgreSQL lock_timeout, SQLite busy timeout).",
    )
    log_level: str = Field("INFO", description="Console log level.")
    log_dir: Path = Field(PROJECT_ROOT / "logs", description="Directory of the daily-rotated log files.")
    log_retention_days: int = Field(30, ge=1, le=3650, description="Days of log files kept.")
    log_json: bool = Field(False, description="Write the log file as JSON lines instead of text.")
    health_grace_minutes: int = Field(
        60, ge=1, le=10_080, description="`main.py health` reports stale this long after a missed iteration."
    )

    # --- risk ----------------------------------------------------------------------------------------
    risk_per_trade: float = Field(0.02, gt=0, le=0.2, description="Share of equity risked per trade.")
    max_daily_loss: float = Field(0.05, gt=0, le=1, description="Daily loss (share of equity) that stops entries.")
    min_confidence: float = Field(0.3, ge=0, le=1, description="Minimum validated confidence for an entry.")
    max_shares: int = Field(1000, ge=1, le=10_000_000, description="Maximum shares per order.")
    stop_atr_multiple: float = Field(
        1.5,
        gt=0,
        le=20,
        description="Stop distance in ATRs for a signal without a strategy stop (every strategy gives one, from its stop_atr parameter).",
    )
    kelly_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Fractional Kelly from realised trades, capped by RISK_PER_TRADE (0 = off; 0.5 = half Kelly).",
    )
    data_quality_min: float = Field(
        0.8,
        ge=0,
        le=1,
        description="Below this share of listed symbols with clean bars, and with at least two symbols in trouble, no new entries that iteration.",
    )
    data_gap_sessions: int = Field(
        3,
        ge=1,
        le=60,
        description="A missing, stale or off-calendar bar blocks that symbol's new entries for this many sessions (its open positions are still managed).",
    )
    drawdown_lock: float = Field(
        0.10,
        ge=0,
        le=1,
        description="Equity this far below its lock reference (peak since the start or the last release) LOCKS new entries for DRAWDOWN_LOCK_SESSIONS (0 = off).",
    )
    drawdown_lock_sessions: int = Field(
        20,
        ge=1,
        le=2520,
        description="Sessions a drawdown lock stops new entries before it is released (exits and stops keep running).",
    )
    drawdown_reducing_sessions: int = Field(
        10,
        ge=0,
        le=2520,
        description="Sessions of REDUCING after a lock is released: entries at DRAWDOWN_REDUCING_SIZE, then ACTIVE (0 = straight to ACTIVE).",
    )
    drawdown_reducing_size: float = Field(
        0.5, gt=0, le=1, description="Share of the normal position size for entries while REDUCING."
    )
    drawdown_halt: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Equity this far below its high-water mark HALTS trading until `main.py reset` (0 = off); must not be below DRAWDOWN_LOCK.",
    )
    trail_atr_multiple: float = Field(
        3.0, ge=0, le=20, description="Trailing stop at close - N x ATR, only ever raised (0 = off)."
    )
    trail_percent: float = Field(
        0.0, ge=0, lt=1, description="Trailing stop at close x (1 - P) (0 = off); the higher of the two trails."
    )
    time_stop_sessions: int = Field(
        0, ge=0, le=2520, description="Exit positions held this many sessions (0 = no time stop)."
    )
    pdt_guard: bool = Field(
        True,
        description="Pattern-day-trader guard: with equity under $25,000 and 3 day trades in the last 5 sessions (the broker's count) or the account flagged, refuse entries whose stop/target could close them the same session; exits always go.",
    )
    gap_guard: bool = Field(
        True,
        description="Overnight-gap guard: refuse an entry whose price at submission (live quote; a backtest's next open) is at or through its stop or target, and resize one whose risk there exceeds RISK_PER_TRADE.",
    )
    broker_error_threshold: int = Field(
        3, ge=1, le=100, description="Consecutive broker errors that pause order submission (with backoff)."
    )
    broker_backoff_seconds: int = Field(
        60, ge=1, le=3600, description="First pause after repeated broker errors; doubles up to an hour."
    )

    # --- LLM -----------------------------------------------------------------------------------------
    llm_selector_provider: LLMProvider = Field(LLMProvider.GROQ, description="Primary strategy-selection LLM.")
    llm_fallback_provider: LLMProvider = Field(LLMProvider.ANTHROPIC, description="Fallback selection LLM.")
    groq_model: str = Field(
        "openai/gpt-oss-120b", min_length=1, description="Groq model for selection (needs strict JSON-schema output)."
    )
    anthropic_model: str = Field(
        "claude-haiku-4-5", min_length=1, description="Anthropic model for selection (fallback)."
    )
    audit_model: str = Field("claude-sonnet-4-6", min_length=1, description="Anthropic model for audit narratives.")
    llm_selection: Toggle = Field(
        Toggle.AUTO,
        description="auto: LLM strategy selection when a key is set (never in replays); off: deterministic.",
    )
    audit_narrative: Toggle = Field(
        Toggle.AUTO, description="auto: Anthropic narrates audit reports when ANTHROPIC_API_KEY is set; off: template."
    )
    llm_timeout_seconds: float = Field(20.0, gt=0, le=300, description="Timeout of one LLM call.")
    llm_chunk_size: int = Field(40, ge=1, le=500, description="Symbols per LLM selection call.")
    llm_daily_max_calls: int = Field(
        200, ge=0, le=1_000_000, description="Daily LLM call budget; beyond it selection is deterministic."
    )
    llm_daily_max_usd: float = Field(
        2.0, ge=0, le=100_000, description="Daily LLM spend budget in USD (estimated from config/llm_prices.json)."
    )
    llm_breaker_threshold: int = Field(
        5, ge=1, le=100, description="Consecutive LLM failures that switch to deterministic selection."
    )
    llm_breaker_cooldown_seconds: int = Field(
        900, ge=1, le=7 * 86_400, description="Cool-down before the LLM is tried again after the breaker trips."
    )
    llm_blind_past: bool = Field(
        True,
        description="Blind LLM prompts about past dates (replays, backtests, runs not on live data): aliases "
        "instead of tickers, no dates. false sends tickers and dates (look-ahead through the model's memory); "
        "such a run prints a warning and records it.",
    )
    llm_sim_daily_max_calls: int = Field(
        20, ge=0, le=1_000_000, description="LLM call budget per simulated day of a replay or backtest."
    )
    llm_sim_daily_max_usd: float = Field(
        0.5, ge=0, le=100_000, description="LLM spend budget in USD per simulated day of a replay or backtest."
    )
    groq_reasoning_effort: str = Field(
        "low",
        pattern="^(none|default|low|medium|high)$",
        description="reasoning_effort sent to a Groq reasoning model (gpt-oss, qwen3); the output budget grows "
        "with it and with the symbol count.",
    )
    llm_provider_order: str = Field(
        "measured",
        pattern="^(measured|configured)$",
        description="measured: ask first the configured model with the best recent success rate, then the "
        "fastest; configured: always LLM_SELECTOR_PROVIDER first.",
    )
    groq_base_url: str | None = Field(None, description="Override of Groq's base URL (proxies, tests).")
    anthropic_base_url: str | None = Field(None, description="Override of Anthropic's base URL (proxies, tests).")

    # --- notifications -------------------------------------------------------------------------------
    notify_urls: SecretStr | None = Field(
        None,
        description="Apprise URLs the daemon notifies (comma- or space-separated), e.g. tgram://bottoken/ChatID or json://host/path; secret: they hold tokens. Empty: no notifications.",
    )
    notify_kinds: str = Field(
        "all",
        description="Notification kinds sent: all, or a list of entry, exit, fill, protection, breaker, reconciliation, data, health, summary, start, stop, crash (all,-summary drops one).",
    )
    notify_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Longest wait for one notification's delivery; a slower one is recorded failed."
    )

    # --- secrets -------------------------------------------------------------------------------------
    alpaca_api_key: SecretStr | None = Field(None, description="Alpaca API key id.")
    alpaca_secret_key: SecretStr | None = Field(None, description="Alpaca API secret.")
    groq_api_key: SecretStr | None = Field(None, description="Groq API key.")
    anthropic_api_key: SecretStr | None = Field(None, description="Anthropic API key.")

    @field_validator("strategy_params")
    @classmethod
    def _check_strategy_params(cls, value: str) -> str:
        import json

        try:
            parsed = json.loads(value or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc.msg} at character {exc.pos}") from None
        if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
            raise ValueError('must be a JSON object of objects, e.g. {"trend_following": {"fast": 20}}')
        from strategies.base import InvalidStrategyParams
        from strategies.registry import build_registry

        try:
            build_registry(parsed)
        except InvalidStrategyParams as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def strategy_overrides(self) -> dict[str, dict[str, Any]]:
        import json

        return json.loads(self.strategy_params or "{}")

    @field_validator("strategy")
    @classmethod
    def _check_strategy(cls, value: str) -> str:
        from strategies.registry import STRATEGY_NAMES

        value = value.strip()
        if value != "auto" and value not in STRATEGY_NAMES:
            raise ValueError(f"must be 'auto' or one of {', '.join(STRATEGY_NAMES)}")
        return value

    @field_validator("benchmark_symbol")
    @classmethod
    def _upper_benchmark(cls, value: str) -> str:
        return value.strip().upper()

    @field_validator("symbols", mode="before")
    @classmethod
    def _parse_symbols(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one symbol is required")
        cleaned = []
        for symbol in value:
            s = symbol.strip().upper()
            if not s.replace(".", "").replace("-", "").isalnum() or len(s) > 12:
                raise ValueError(f"{symbol!r} is not a valid ticker symbol")
            if s not in cleaned:
                cleaned.append(s)
        return cleaned

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+", "postgres:")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        from core.persistence.db import InvalidDatabaseUrl, normalise_url, sqlite_file

        try:
            parsed = normalise_url(value)
            if parsed.get_backend_name() == "sqlite":
                sqlite_file(parsed)
        except InvalidDatabaseUrl as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("alpaca_data_url", "alpaca_trading_url", "groq_base_url", "anthropic_base_url", mode="before")
    @classmethod
    def _empty_url_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("alpaca_stream_url", mode="before")
    @classmethod
    def _empty_stream_url_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and not value.startswith(("ws://", "wss://")):
            raise ValueError("must be a ws:// or wss:// URL")
        return value

    @field_validator("notify_urls", mode="before")
    @classmethod
    def _empty_notify_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("notify_urls")
    @classmethod
    def _check_notify_urls(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_notify_urls(split_notify_urls(value.get_secret_value()))
        return value

    @field_validator("notify_kinds")
    @classmethod
    def _check_notify_kinds(cls, value: str) -> str:
        from core.vocabulary import parse_notify_kinds

        parse_notify_kinds(value)
        return value

    @property
    def notify_url_list(self) -> list[str]:
        """The configured apprise URLs (empty: no notifications)."""
        return split_notify_urls(self.notify_urls.get_secret_value()) if self.notify_urls is not None else []

    @field_validator("alpaca_api_key", "alpaca_secret_key", "groq_api_key", "anthropic_api_key", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _check_cross_fields(self) -> Settings:
        if (
            self.llm_fallback_provider is not LLMProvider.NONE
            and self.llm_fallback_provider == self.llm_selector_provider
        ):
            raise ValueError("LLM_FALLBACK_PROVIDER must differ from LLM_SELECTOR_PROVIDER (or be 'none')")
        if self.drawdown_halt and self.drawdown_lock and self.drawdown_halt < self.drawdown_lock:
            raise ValueError(
                f"DRAWDOWN_HALT ({self.drawdown_halt}) must not be below DRAWDOWN_LOCK ({self.drawdown_lock}): the halt is the deeper protection"
            )
        return self

    # --- derived -------------------------------------------------------------------------------------
    @property
    def has_alpaca_keys(self) -> bool:
        return self.alpaca_api_key is not None and self.alpaca_secret_key is not None

    @property
    def secret_values(self) -> list[str]:
        """Every configured secret's plain value, for log redaction and the database scrubber: the API keys and the
        credentials written in a URL setting (``https://user:password@proxy``: the password, or a lone user/token)."""
        secrets = (self.alpaca_api_key, self.alpaca_secret_key, self.groq_api_key, self.anthropic_api_key)
        values = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        for name in URL_SETTINGS:
            values.extend(url_credentials(getattr(self, name)))
        for url in self.notify_url_list:
            values.extend(notify_url_secrets(url))
        return list(dict.fromkeys(values))


URL_SETTINGS = (
    "alpaca_data_url",
    "alpaca_trading_url",
    "alpaca_stream_url",
    "groq_base_url",
    "anthropic_base_url",
    "database_url",
)
"""The settings that hold URLs (they may carry proxy or database credentials)."""


def url_credentials(url: str | None) -> list[str]:
    """The secret part of a URL's user-info: the password (decoded and as written, and the Basic-auth token of
    user:password), or the user when there is no password (a token used as the user name)."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        password, user = parts.password, parts.username
    except ValueError:
        return []
    secret = password if password else user
    if not secret:
        return []
    values = [secret, unquote(secret)]
    if user and password:  # the HTTP Basic credentials clients derive from the URL
        values.append(base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode())
    return list(dict.fromkeys(values))


def split_notify_urls(text: str) -> list[str]:
    """NOTIFY_URLS as a list: URLs separated by commas, spaces or new lines."""
    return [part for part in text.replace(",", " ").split() if part]


def check_notify_urls(urls: list[str]) -> None:
    """Every URL must be one apprise knows (a supported scheme, with the fields it needs); the error says which
    entry is wrong and its scheme, never the URL (it holds a token)."""
    import apprise

    quiet_apprise(part for url in urls for part in notify_url_secrets(url))
    for n, url in enumerate(urls, start=1):
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if not scheme or not scheme.replace("+", "").replace("-", "").isalnum():
            raise ValueError(
                f"entry {n} of {len(urls)} is not a URL (expected scheme://..., e.g. tgram://bottoken/ChatID)"
            )
        if not apprise.Apprise().add(url):
            raise ValueError(
                f"entry {n} of {len(urls)} ({scheme}://...) is not a valid apprise URL: unknown service or missing fields"
            )


def quiet_apprise(secrets: Iterable[str]) -> None:
    """Keep apprise's own log lines (which name each URL, token included) out of the process's logs, and scrub
    ``secrets`` from the debug lines of the HTTP client it uses."""
    from utils.secrets import scrub_library_logs

    scrub_library_logs(list(secrets), ("urllib3.connectionpool", "requests"), silence=("apprise",))


_MIN_NOTIFY_SECRET = 6  # shorter URL parts (ports, short ids) are not treated as secrets


def notify_url_secrets(url: str) -> list[str]:
    """The parts of an apprise URL to keep out of logs, the database and messages: the whole URL, everything after its
    scheme, and every part of it (user, password, bot token, path segment, query value) of at least six characters
    that is not a host name or address (a part with a dot)."""
    rest = url.split("://", 1)[1] if "://" in url else url
    values = [url, rest]
    for separator in "?&=@/:#":
        rest = rest.replace(separator, " ")
    for part in rest.split():
        if len(part) >= _MIN_NOTIFY_SECRET and "." not in part:
            values.extend([part, unquote(part)])
    if "://" in url:  # tgram://123456:ABC-token/chat: the bot token is ``id:secret``, a host:port to a URL parser
        head = url.split("://", 1)[1].split("/", 1)[0].split("@")[-1]
        if ":" in head and "." not in head and len(head) >= _MIN_NOTIFY_SECRET:
            values.append(head)
    return list(dict.fromkeys(values))


def mask_url_credentials(url: str | None) -> str | None:
    """``https://***:***@host/path``: a URL with any user-info replaced (None and URLs without one unchanged)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    masked = "***:***@" if ":" in parts.netloc.rsplit("@", 1)[0] else "***@"
    return urlunsplit(parts._replace(netloc=masked + host))


def _variable_name(loc: tuple[Any, ...]) -> str:
    return str(loc[0]).upper() if loc else "SETTINGS"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning pydantic's error into one that names each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = _variable_name(err.get("loc", ()))
            message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            if name == "SETTINGS":
                lines.append(message)
            else:
                lines.append(f"{name}: {message}")
        raise SettingsError("invalid configuration: " + "; ".join(lines)) from None


# Variables a .env may hold that are not settings: the test suite's own switches.
NON_SETTING_VARIABLES = frozenset({"TEST_POSTGRES_URL", "REQUIRE_POSTGRES", "REQUIRE_BROWSER"})


def unknown_env_file_keys(path: str | Path | None = None) -> list[str]:
    """One warning per key of the ``.env`` file (``path``; default: the one :class:`Settings` reads, in the current
    directory) that is no setting — a misspelt name is otherwise silently ignored — with the closest setting's name
    when there is one. Empty when the file does not exist."""
    import difflib

    from dotenv import dotenv_values

    env_file = Path(path if path is not None else str(Settings.model_config.get("env_file") or ".env"))
    if not env_file.is_file():
        return []
    known = sorted(name.upper() for name in Settings.model_fields)
    warnings = []
    for key in dotenv_values(env_file, encoding="utf-8"):
        name = key.strip().upper()
        if not name or name in known or name in NON_SETTING_VARIABLES:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"{env_file}: {name} is not a setting{hint}; it is ignored")
    return warnings
