"""Exposure arithmetic over a :class:`PortfolioView`: gross exposure and exposure per sector/theme bucket."""

from __future__ import annotations

from core.risk.models import PortfolioView, normalise_bucket


def exposure_by_bucket(portfolio: PortfolioView) -> dict[str, float]:
    """Gross exposure in money per sector bucket: sum of ``abs(market_value)`` of the positions in each bucket.

    Buckets are normalised (lower-case, stripped; empty -> "unknown"). Buckets with no position are absent.
    Divide by ``portfolio.equity`` for fractions.
    """
    buckets: dict[str, float] = {}
    for position in portfolio.positions.values():
        bucket = normalise_bucket(position.sector)
        buckets[bucket] = buckets.get(bucket, 0.0) + abs(float(position.market_value))
    return buckets


def gross_exposure(portfolio: PortfolioView) -> float:
    """Sum of ``abs(market_value)`` over all positions (money)."""
    return sum(abs(float(p.market_value)) for p in portfolio.positions.values())


def position_value(portfolio: PortfolioView, symbol: str) -> float:
    """``abs(market_value)`` of the position in ``symbol`` (0 when none)."""
    position = portfolio.positions.get(symbol)
    return 0.0 if position is None else abs(float(position.market_value))
