"""Deterministic, context-aware choice of one registered strategy per symbol.

This is the rule the Strategy agent falls back to when the LLM adviser abstains or answers outside the closed set,
and the whole selection when no adviser is configured.  It only ever returns a name from the registry it was
built with, and it always returns one.

Rule, in order:
 1. Eligible strategies: peer needs satisfiable (``benchmark_available`` / ``universe_available``) and enough
    history: ``min_history < available_history`` (the decision row, index ``available_history - 1``, must be at
    or after the first row the strategy may signal on, see :mod:`strategies.base`).
 2. The regime's preference list (:data:`REGIME_PREFERENCES`): trending -> trend following / momentum / breakout;
    ranging -> mean reversion / Bollinger / envelope; volatile -> volatility breakout / Bollinger / RSI.  In a
    trending regime with ``volume_ratio >= breakout_volume_ratio`` the breakout strategy moves to the front
    (a volume-confirmed move).  The first eligible preference wins.
 3. Otherwise the eligible strategy with the smallest ``min_history`` (registry order breaks ties).
 4. Otherwise (nothing eligible): the peer-satisfiable strategy with the smallest ``min_history``; if no strategy's
    peer needs can be met, the registry's smallest ``min_history`` overall.  It will HOLD until it has the history.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Final, Protocol
from collections.abc import Callable, Mapping

from strategies.base import Strategy
from strategies.context import MarketContext

REGIME_PREFERENCES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "trending_up": (
            "trend_following",
            "momentum_rotation",
            "dual_momentum",
            "sector_rotation",
            "relative_strength",
            "breakout",
        ),
        "trending_down": ("trend_following", "momentum_rotation", "breakout", "dual_momentum", "relative_strength"),
        "ranging": ("mean_reversion", "bollinger_bands", "moving_average_envelope"),
        "volatile": ("volatility_breakout", "bollinger_bands", "mean_reversion"),
    }
)


class StrategySelector(Protocol):
    """Chooses one registered strategy per symbol: :class:`DeterministicSelector`, :class:`FixedSelector` and the
    backtest's ``RecordedSelector``. The Strategy agent hands ``context=None`` to a selector whose ``needs_context`` is
    false (it does not compute the market context for it); a selector that needs it raises ``ValueError`` on None."""

    @property
    def needs_context(self) -> bool: ...

    def choose(
        self,
        context: MarketContext | None,
        available_history: int,
        *,
        benchmark_available: bool = False,
        universe_available: bool = False,
    ) -> tuple[str, str]:
        """``(strategy_name, reason)``: a name of the registry, and why, for a symbol with ``available_history`` bars
        visible at the decision time."""
        ...


class DeterministicSelector:
    needs_context = True  # the choice follows the market context's regime

    def __init__(self, registry: Mapping[str, Strategy], *, breakout_volume_ratio: float = 1.2) -> None:
        if not registry:
            raise ValueError("DeterministicSelector needs a non-empty strategy registry")
        if not (math.isfinite(breakout_volume_ratio) and breakout_volume_ratio > 0):
            raise ValueError(f"breakout_volume_ratio must be a positive number, got {breakout_volume_ratio}")
        self._registry: Mapping[str, Strategy] = MappingProxyType(dict(registry))
        self._order = {name: position for position, name in enumerate(self._registry)}
        self._breakout_volume_ratio = breakout_volume_ratio

    def preferences(self, context: MarketContext) -> tuple[str, ...]:
        """The regime's preference order for this context (names may be absent from the registry)."""
        order = REGIME_PREFERENCES[context.regime]
        trending = context.regime in ("trending_up", "trending_down")
        if trending and context.volume_ratio >= self._breakout_volume_ratio and "breakout" in order:
            order = ("breakout", *(name for name in order if name != "breakout"))
        return order

    def _peers_ok(self, strategy: Strategy, benchmark_available: bool, universe_available: bool) -> bool:
        return (benchmark_available or not strategy.needs_benchmark) and (
            universe_available or not strategy.needs_universe
        )

    def _smallest_history(self, names: list[str]) -> str:
        return min(names, key=lambda name: (self._registry[name].min_history, self._order[name]))

    def choose(
        self,
        context: MarketContext | None,
        available_history: int,
        *,
        benchmark_available: bool = False,
        universe_available: bool = False,
    ) -> tuple[str, str]:
        """``(strategy_name, reason)`` for a symbol with ``available_history`` bars visible at the decision time."""
        name, reason = self.choose_deferred(
            context, available_history, benchmark_available=benchmark_available, universe_available=universe_available
        )
        return name, reason()

    def choose_deferred(
        self,
        context: MarketContext | None,
        available_history: int,
        *,
        benchmark_available: bool = False,
        universe_available: bool = False,
    ) -> tuple[str, Callable[[], str]]:
        """:meth:`choose` with the reason written only when asked for (a backtest reads it for the few symbols with
        a signal; formatting it for every symbol every session was 5% of a backtest)."""
        if context is None:
            raise ValueError("DeterministicSelector chooses from the market context; got None")
        if isinstance(available_history, bool) or int(available_history) != available_history or available_history < 0:
            raise ValueError(f"available_history must be a non-negative integer, got {available_history!r}")
        registry = self._registry
        satisfiable = [
            name for name in registry if self._peers_ok(registry[name], benchmark_available, universe_available)
        ]
        eligible = [name for name in satisfiable if registry[name].min_history < available_history]
        preferred = self.preferences(context)

        ctx: MarketContext = context

        def situation() -> str:
            return (
                f"regime {ctx.regime} (trend_strength {ctx.trend_strength:.1f}, volatility "
                f"{ctx.volatility:.2f}, volume_ratio {ctx.volume_ratio:.2f}), {available_history} bars"
            )

        first = next((name for name in preferred if name in eligible), None)
        if first is not None:
            note = " (volume-confirmed breakout)" if first == "breakout" and preferred[0] == "breakout" else ""
            return (
                first,
                lambda: (
                    f"{situation()}: {first} is the first eligible choice of {list(preferred)}{note}; "
                    f"needs {registry[first].min_history} bars"
                ),
            )
        if eligible:
            fallback = self._smallest_history(eligible)
            return (
                fallback,
                lambda: (
                    f"{situation()}: none of {list(preferred)} is eligible (history or peers); fallback to eligible "
                    f"{fallback} with the smallest min_history ({registry[fallback].min_history})"
                ),
            )
        pool = satisfiable or list(registry)
        last = self._smallest_history(pool)
        peers_note = "" if satisfiable else "; no strategy's peer needs can be met"
        return (
            last,
            lambda: (
                f"{situation()}: no strategy has enough history{peers_note}; fallback to {last}, the smallest "
                f"min_history ({registry[last].min_history}); it holds until then"
            ),
        )


class FixedSelector:
    """Always the same registered strategy (``STRATEGY=<name>`` for the daemon, ``backtest --strategy``); the strategy
    simply holds while a symbol lacks the history it needs. ``origin`` names where the choice came from in every
    reason (``STRATEGY``, ``backtest --strategy``)."""

    needs_context = False  # the Strategy agent may pass None instead of computing the market context

    def __init__(self, registry: Mapping[str, Strategy], name: str, *, origin: str = "STRATEGY") -> None:
        if name not in registry:
            raise ValueError(f"strategy {name!r} is not registered; choose one of {', '.join(registry)}")
        self._registry = registry
        self.name = name
        self._origin = origin
        self._needed = registry[name].min_history
        self._ready = f"fixed strategy {name} ({origin})"  # the reason once the history suffices (every session after)

    def choose(
        self,
        context: MarketContext | None,
        available_history: int,
        *,
        benchmark_available: bool = False,
        universe_available: bool = False,
    ) -> tuple[str, str]:
        needed = self._needed
        if needed < available_history:
            return self.name, self._ready
        return self.name, f"{self._ready}; it holds until it has more than {needed} bars ({available_history} now)"
