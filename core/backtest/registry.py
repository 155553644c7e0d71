"""The backtest's strategy registry: the settings' overrides plus ``--param``, without profit targets when the entries
carry no bracket legs (:func:`without_targets`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from config.settings import Settings
from core.backtest.config import BacktestConfig, BacktestError
from strategies.base import InvalidStrategyParams, Strategy
from strategies.registry import build_registry

__all__ = ["without_targets"]


class _WithoutTargets:
    """A registered strategy whose signal frames carry no profit target (NaN), everything else unchanged.

    The Risk agent builds a BRACKET entry (stop-loss and take-profit legs) only when the signal has a target, so
    with this wrapper every entry is a plain market order and a position is closed by the strategy's SELL signal.
    """

    def __init__(self, inner: Strategy) -> None:
        self._inner = inner
        # read for every symbol of every session: plain attributes, not a __getattr__ call each time
        for name in ("name", "min_history", "needs_benchmark", "needs_universe", "description"):
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))

    def __getattr__(self, name: str) -> Any:  # name, description, params, min_history, needs_*, reason, describe...
        return getattr(self._inner, name)

    def compute(self, bars: pd.DataFrame, peers: Any = None) -> pd.DataFrame:
        frame = self._inner.compute(bars, peers)
        out = frame.copy()
        out["target"] = np.nan
        return out

    def signal_arrays(
        self, bars: pd.DataFrame, peers: Any = None, *, data: Any = None, indicators: bool = True
    ) -> dict[str, np.ndarray]:
        """:meth:`compute`'s columns as arrays (the inner strategy's, the target NaN)."""
        arrays = dict(self._inner.signal_arrays(bars, peers, data=data, indicators=indicators))
        arrays["target"] = np.full(len(bars), np.nan)
        return arrays


def without_targets(registry: Mapping[str, Strategy]) -> dict[str, Any]:
    """The registry with every strategy wrapped so that it emits no profit target (see :class:`_WithoutTargets`)."""
    return {name: _WithoutTargets(strategy) for name, strategy in registry.items()}


def _registry(settings: Settings, config: BacktestConfig) -> Mapping[str, Any]:
    overrides = {name: dict(values) for name, values in settings.strategy_overrides.items()}
    if config.strategy is not None and config.params:
        overrides[config.strategy] = {**overrides.get(config.strategy, {}), **dict(config.params)}
    try:
        registry: Mapping[str, Any] = build_registry(overrides)
    except InvalidStrategyParams as exc:
        raise BacktestError(str(exc)) from None
    return registry if config.use_brackets else without_targets(registry)
