"""The backtest's request: :class:`BacktestConfig`, its validation and the option parsers of ``main.py backtest``.

``None`` in a :class:`BacktestConfig` means "from the settings" (cash, costs, data directory) or "all of the data"
(symbols, start, end); :meth:`BacktestConfig.check` raises :class:`BacktestError` for an inconsistent request before
any data is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from core.risk import parse_sizing
from config.settings import Settings
from core.brokers.simulated import FILL_MODELS
from core.data.files import SUFFIXES
from core.errors import ConfigurationError
from strategies.registry import STRATEGY_CLASSES

__all__ = [
    "ALPACA_CACHE_ALIASES",
    "AUTO_EXCHANGE",
    "BacktestConfig",
    "BacktestError",
    "DATA_CALENDAR",
    "DEFAULT_CALENDAR",
    "DEFAULT_MONTE_CARLO",
    "DEFAULT_WALK_FORWARD",
    "discover_symbols",
    "exchange_codes",
    "parse_param",
    "resolve_data_dir",
]

DEFAULT_MONTE_CARLO = 1000
DEFAULT_WALK_FORWARD = (252, 63)
ALPACA_CACHE_ALIASES = ("alpaca-cache", "bar-cache")
DEFAULT_CALENDAR = "auto"
AUTO_EXCHANGE = "XNYS"
DATA_CALENDAR = "data"  # --calendar data: the sessions are the dates the bars have; no exchange-session checks


class BacktestError(ConfigurationError, ValueError):
    """The backtest request cannot be run as given (bad option, missing data, unknown run...); the message says why."""


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """What to backtest. ``None`` means "from the settings" (cash, costs, data directory) or "all of the data"
    (symbols, start, end).

    ``selector``: ``"deterministic"`` (the daemon's selector) or ``"recorded:RUN_ID"``; ``strategy`` pins one
    registered strategy (with ``params`` overriding its parameters) and excludes a recorded selector.
    ``brackets=False`` drops the strategies' profit targets so that the Risk agent sends plain market entries
    (no stop-loss/take-profit legs): positions then exit only on the strategy's SELL signal. ``None`` (the default)
    means "as the risk limits": bracket legs with them, none with ``risk_limits=False`` (the comparison mode: the Risk
    agent then only sizes, and positions exit as the strategy says, as in any other backtester's crossover).
    """

    data_dir: Path | None = None
    symbols: tuple[str, ...] | None = None
    start: date | None = None
    end: date | None = None
    cash: Decimal | None = None
    commission_per_share: Decimal | None = None
    commission_minimum: Decimal | None = None
    commission_max_pct: Decimal | None = None
    slippage_bps: Decimal | None = None
    strategy: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    selector: str = "deterministic"
    llm: bool = False
    sizing: str = "risk"
    risk_limits: bool = True
    fill: str = "next-open"
    brackets: bool | None = None
    shadow: bool = True
    benchmark: str | None = None
    robustness: bool = False
    monte_carlo: int = DEFAULT_MONTE_CARLO
    walk_forward: tuple[int, int] = DEFAULT_WALK_FORWARD
    seed: int = 0
    audit_batch: int | None = None
    record_all: bool = False  # also record the routine decisions (data ok, HOLD, skip, no order) of every symbol
    calendar: str = DEFAULT_CALENDAR  # "auto", an exchange_calendars code (sessions and session checks), or "data"
    verify: bool = False  # process every session (no quiet session skipped: core.backtest.skipping)

    @property
    def use_brackets(self) -> bool:
        """Whether entries carry the strategy's stop-loss/take-profit legs (``brackets``, else as ``risk_limits``)."""
        return self.risk_limits if self.brackets is None else self.brackets

    def check(self) -> None:
        """Raise :class:`BacktestError` for an inconsistent request (before any data is read)."""
        if self.start is not None and self.end is not None and self.start > self.end:
            raise BacktestError(f"--start {self.start} is after --end {self.end}")
        for name in ("cash", "commission_per_share", "commission_minimum", "commission_max_pct", "slippage_bps"):
            value = getattr(self, name)
            if value is not None and (not value.is_finite() or value < 0):
                raise BacktestError(f"{name} must be a finite, non-negative amount, got {value}")
        if self.cash is not None and self.cash <= 0:
            raise BacktestError(f"cash must be positive, got {self.cash}")
        if self.commission_max_pct is not None and self.commission_max_pct >= 1:
            raise BacktestError(
                f"commission_max_pct is a fraction of the trade value below 1, got {self.commission_max_pct}"
            )
        if self.slippage_bps is not None and self.slippage_bps >= 10_000:
            raise BacktestError(f"slippage must be below 10000 bps, got {self.slippage_bps}")
        if self.fill not in FILL_MODELS:
            raise BacktestError(f"fill must be one of {', '.join(FILL_MODELS)}, got {self.fill!r}")
        try:
            parse_sizing(self.sizing)
        except ValueError as exc:
            raise BacktestError(str(exc)) from None
        if self.selector != "deterministic" and not self.selector.startswith("recorded:"):
            raise BacktestError(f"selector must be 'deterministic' or 'recorded:RUN_ID', got {self.selector!r}")
        if self.selector.startswith("recorded:") and not self.selector.removeprefix("recorded:").strip():
            raise BacktestError("--selector recorded:RUN_ID needs a run id")
        if self.strategy is not None and self.strategy not in STRATEGY_CLASSES:
            raise BacktestError(f"unknown strategy {self.strategy!r}; registered: {', '.join(STRATEGY_CLASSES)}")
        if self.params and self.strategy is None:
            raise BacktestError("--param needs --strategy (the parameters belong to the pinned strategy)")
        if self.calendar not in (DEFAULT_CALENDAR, DATA_CALENDAR) and self.calendar not in exchange_codes():
            raise BacktestError(
                f"--calendar {self.calendar!r}: not an exchange code known to exchange_calendars (e.g. XNYS, XLON, XETR), "
                f"{DATA_CALENDAR!r} (the dates the bars have) or {DEFAULT_CALENDAR!r}"
            )
        if self.strategy is not None and self.selector != "deterministic":
            raise BacktestError("--strategy and --selector recorded:RUN_ID exclude each other")
        if self.llm and (self.strategy is not None or self.selector != "deterministic"):
            raise BacktestError(
                "--llm asks the LLM to choose strategies; it cannot be combined with --strategy or --selector"
            )
        if isinstance(self.monte_carlo, bool) or self.monte_carlo < 1:
            raise BacktestError(f"monte-carlo runs must be a positive integer, got {self.monte_carlo!r}")
        train, test = self.walk_forward
        if train < 1 or test < 1:
            raise BacktestError(f"walk-forward TRAIN:TEST must be positive session counts, got {train}:{test}")
        if self.audit_batch is not None and self.audit_batch < 1:
            raise BacktestError(f"audit_batch must be at least 1, got {self.audit_batch}")


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value) with the value read as bool (true/false), int, float or else str."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise BacktestError(f"--param takes key=value, got {text!r}")
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    try:
        return key, int(raw)
    except ValueError:
        pass
    try:
        return key, float(raw)
    except ValueError:
        return key, raw


def resolve_data_dir(value: str | Path | None, settings: Settings) -> Path:
    """The bar directory: ``None`` -> ``DATA_DIR``; ``alpaca-cache``/``bar-cache`` -> ``BAR_CACHE_DIR`` (the Alpaca
    disk cache writes one ``SYMBOL.parquet`` per symbol there, which :class:`FileProvider` reads as is)."""
    if value is None:
        return Path(settings.data_dir)
    if str(value) in ALPACA_CACHE_ALIASES:
        return Path(settings.bar_cache_dir)
    return Path(value).expanduser()


def discover_symbols(directory: Path) -> tuple[str, ...]:
    """Every symbol with a ``SYMBOL.csv``/``SYMBOL.parquet`` file in ``directory`` (upper-case, sorted)."""
    if not directory.is_dir():
        raise BacktestError(f"data directory {directory} does not exist or is not a directory")
    found = {
        p.stem.upper()
        for p in directory.iterdir()
        if p.suffix.lower() in SUFFIXES and p.is_file() and not p.name.startswith(".")
    }
    if not found:
        raise BacktestError(f"no SYMBOL.csv or SYMBOL.parquet files in {directory}")
    return tuple(sorted(found))


def exchange_codes() -> frozenset[str]:
    """The exchange codes ``--calendar`` accepts besides ``data`` (exchange_calendars' calendars, aliases included)."""
    import exchange_calendars as xcals

    return frozenset(xcals.get_calendar_names(include_aliases=True))
