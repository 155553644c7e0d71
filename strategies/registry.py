"""The closed set of registered strategies.

``build_registry()`` returns a fresh, read-only mapping ``name -> Strategy`` (in :data:`STRATEGY_NAMES` order);
nothing is registered at import time and there is no global registry object to mutate.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any
from collections.abc import Mapping

from strategies.base import InvalidStrategyParams, Strategy
from strategies.relative import DualMomentum, RelativeStrength, SectorRotation
from strategies.reversion import BollingerBands, MeanReversion, MovingAverageEnvelope
from strategies.trend import Breakout, MomentumRotation, TrendFollowing, VolatilityBreakout

STRATEGY_CLASSES: Mapping[str, type[Strategy]] = MappingProxyType(
    {
        cls.name: cls
        for cls in (
            TrendFollowing,
            MomentumRotation,
            MeanReversion,
            Breakout,
            VolatilityBreakout,
            RelativeStrength,
            SectorRotation,
            DualMomentum,
            MovingAverageEnvelope,
            BollingerBands,
        )
    }
)

STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGY_CLASSES)


def build_registry(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Mapping[str, Strategy]:
    """Instantiate every registered strategy, applying per-strategy parameter overrides.

    Raises :class:`InvalidStrategyParams` naming the strategy for an unknown strategy name, an override that is not
    a mapping, or a parameter the strategy rejects (unknown key, out-of-range value, failed cross-field check).
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(STRATEGY_CLASSES))
    if unknown:
        raise InvalidStrategyParams(
            f"unknown strategy name(s) {', '.join(repr(u) for u in unknown)} in overrides; "
            f"known: {', '.join(STRATEGY_NAMES)}"
        )
    registry: dict[str, Strategy] = {}
    for name, cls in STRATEGY_CLASSES.items():
        params = overrides.get(name, {})
        if not isinstance(params, Mapping):
            raise InvalidStrategyParams(
                f"strategy {name!r}: overrides must be a mapping of parameter names to values, "
                f"got {type(params).__name__}"
            )
        bad_keys = [k for k in params if not isinstance(k, str)]
        if bad_keys:
            raise InvalidStrategyParams(f"strategy {name!r}: parameter names must be strings, got {bad_keys!r}")
        registry[name] = cls(**params)
    return MappingProxyType(registry)


def describe_registry(registry: Mapping[str, Strategy]) -> list[dict[str, Any]]:
    """One :meth:`Strategy.describe` dict per registered strategy, in registry order."""
    return [strategy.describe() for strategy in registry.values()]
