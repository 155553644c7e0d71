"""Latest quotes for the Risk agent's spread rule.

A :class:`QuoteSource` answers one batched request for the latest best bid and ask of several symbols
(``AlpacaBarProvider.latest_quotes``: Alpaca's ``GET /v2/stocks/quotes/latest``). Only the live daemon has one; a
backtest or replay has bars only, and the spread rule then records "not applicable" with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypedDict
from collections.abc import Mapping, Sequence

from core.kernel.domain import ensure_utc, frozen_map


class QuoteRecord(TypedDict):
    """A quote as recorded in a decision's details (JSON-compatible): bid, ask and the ISO 8601 time."""

    bid: float
    ask: float
    at: str


@dataclass(frozen=True, slots=True)
class Quote:
    """The best bid and ask of ``symbol`` at ``at`` (a price of 0 means no bid, or no ask, as in Alpaca's API)."""

    symbol: str
    bid: float
    ask: float
    at: datetime

    def __post_init__(self) -> None:
        ensure_utc(self.at, "at")

    @property
    def problem(self) -> str | None:
        """Why the quote cannot measure a spread (one-sided, crossed, not a number), or None when it can."""
        if not (math.isfinite(self.bid) and math.isfinite(self.ask)):
            return f"quote of {self.symbol} is not a number (bid {self.bid!r}, ask {self.ask!r})"
        if self.bid <= 0 or self.ask <= 0:
            return f"one-sided quote of {self.symbol} (bid {self.bid:g}, ask {self.ask:g}): no market on one side"
        if self.ask < self.bid:
            return f"crossed quote of {self.symbol} (bid {self.bid:g} above ask {self.ask:g})"
        return None

    @property
    def spread_pct(self) -> float | None:
        """(ask - bid) / midpoint as a fraction, or None when :attr:`problem` says the quote cannot measure it."""
        if self.problem is not None:
            return None
        mid = (self.ask + self.bid) / 2.0
        return (self.ask - self.bid) / mid

    def as_dict(self) -> QuoteRecord:
        return {"bid": self.bid, "ask": self.ask, "at": self.at.isoformat()}


@dataclass(frozen=True, slots=True)
class QuotesResult:
    """The answer of one latest-quote request: ``quotes`` by symbol (a symbol the source has no quote for is absent),
    or ``error`` when the request as a whole failed (then ``quotes`` is empty)."""

    quotes: Mapping[str, Quote] = field(default_factory=frozen_map)
    error: str | None = None
    source: str = ""


class QuoteSource(Protocol):
    """One batched request for the latest quotes of ``symbols``; never raises for network or API failures (they
    come back as ``QuotesResult.error``)."""

    name: str

    def latest_quotes(self, symbols: Sequence[str]) -> QuotesResult: ...
