"""Trading-cost models of the simulated broker: commissions and slippage.

Pure functions of their inputs, ``Decimal`` in and out. Floats are refused: money never passes through binary
floating point here (settings that arrive as floats are converted by the composition root with
``Decimal(str(value))``).

Commission models price a whole **order**: ``commission(quantity, notional)`` is the fee for an order that has
executed ``quantity`` shares worth ``notional`` in total. The simulated broker charges partial fills the increment
``commission(cumulative) - commission(previous cumulative)``, so a per-order minimum is charged once per order, not
once per fill. Every model returns ``0.00`` for a zero quantity and is non-decreasing in quantity and notional
(the broker relies on that to find the largest affordable quantity).

Slippage models move a reference price against the trader: a buy pays up, a sell receives less. A moved price is
quantised to :data:`core.kernel.domain.PRICE_QUANTUM` (0.0001) with banker's rounding; zero slippage leaves the price as it is
(a bar's exact price, see :func:`core.kernel.domain.data_price`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

from core.kernel.domain import Side, to_money, to_price

_ZERO = Decimal("0")
_BPS = Decimal("10000")


def _require_decimal(value: object, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError(f"{name} must be a Decimal (or int), got {type(value).__name__}: {value!r}")
    if not Decimal(value).is_finite() or Decimal(value) < 0:
        raise ValueError(f"{name} must be a finite, non-negative amount, got {value!r}")


@runtime_checkable
class CommissionModel(Protocol):
    def commission(self, quantity: int, notional: Decimal) -> Decimal:
        """Fee in account currency (rounded to the cent) for an order of ``quantity`` shares worth ``notional``."""
        ...

    def describe(self) -> dict[str, str]:
        """A JSON-serialisable description (used to check a restored broker uses the same costs)."""
        ...


@runtime_checkable
class SlippageModel(Protocol):
    def apply(self, price: Decimal, side: Side) -> Decimal:
        """The price actually obtained when trading ``side`` at reference ``price``."""
        ...

    def describe(self) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class PerShareCommission:
    """``per_share`` × quantity, at least ``minimum`` per order, at most ``max_pct`` × notional.

    The cap wins over the minimum (as at Interactive Brokers: a tiny order pays 1 % of its value, not the minimum).
    Example: ``PerShareCommission(Decimal("0.005"), Decimal("1.00"), Decimal("0.01"))`` charges 100 shares worth
    5,005.00 → max(0.50, 1.00) = 1.00 (cap 50.05 not binding); 10 shares worth 50.00 → min(1.00, 0.50) = 0.50.
    """

    per_share: Decimal
    minimum: Decimal = _ZERO
    max_pct: Decimal | None = None

    def __post_init__(self) -> None:
        _require_decimal(self.per_share, "per_share")
        _require_decimal(self.minimum, "minimum")
        _require_decimal(self.max_pct, "max_pct", allow_none=True)

    def commission(self, quantity: int, notional: Decimal) -> Decimal:
        if quantity < 0:
            raise ValueError(f"quantity must be non-negative, got {quantity}")
        if quantity == 0:
            return to_money(_ZERO)
        fee = max(Decimal(self.per_share) * quantity, Decimal(self.minimum))
        if self.max_pct is not None:
            fee = min(fee, Decimal(self.max_pct) * abs(notional))
        return to_money(fee)

    def describe(self) -> dict[str, str]:
        return {
            "model": "per_share",
            "per_share": str(self.per_share),
            "minimum": str(self.minimum),
            "max_pct": "" if self.max_pct is None else str(self.max_pct),
        }


@dataclass(frozen=True, slots=True)
class FlatCommission:
    """A fixed fee per order (charged with the order's first fill), whatever its size."""

    amount: Decimal

    def __post_init__(self) -> None:
        _require_decimal(self.amount, "amount")

    def commission(self, quantity: int, notional: Decimal) -> Decimal:
        if quantity < 0:
            raise ValueError(f"quantity must be non-negative, got {quantity}")
        return to_money(Decimal(self.amount) if quantity > 0 else _ZERO)

    def describe(self) -> dict[str, str]:
        return {"model": "flat", "amount": str(self.amount)}


@dataclass(frozen=True, slots=True)
class ZeroCommission:
    def commission(self, quantity: int, notional: Decimal) -> Decimal:
        if quantity < 0:
            raise ValueError(f"quantity must be non-negative, got {quantity}")
        return to_money(_ZERO)

    def describe(self) -> dict[str, str]:
        return {"model": "zero"}


@dataclass(frozen=True, slots=True)
class BpsSlippage:
    """Moves the price by ``bps`` basis points against the trader: buy at p × (1 + bps/10⁴), sell at p × (1 − bps/10⁴).

    Example: 10 bps on 50.00 → buy 50.05, sell 49.95.
    """

    bps: Decimal

    def __post_init__(self) -> None:
        _require_decimal(self.bps, "bps")
        if Decimal(self.bps) >= _BPS:
            raise ValueError(f"bps must be below 10000 (100 %), got {self.bps}")

    def apply(self, price: Decimal, side: Side) -> Decimal:
        if not self.bps:
            return price  # 0 bps moves nothing: the price stays as it is, like ZeroSlippage
        factor = Decimal(self.bps) / _BPS
        if side is Side.BUY:
            return to_price(price * (1 + factor))
        return to_price(price * (1 - factor))

    def describe(self) -> dict[str, str]:
        return {"model": "bps", "bps": str(self.bps)}


@dataclass(frozen=True, slots=True)
class ZeroSlippage:
    def apply(self, price: Decimal, side: Side) -> Decimal:
        return price  # the price itself: the bar's exact price, or a level already on the grid

    def describe(self) -> dict[str, str]:
        return {"model": "zero"}
