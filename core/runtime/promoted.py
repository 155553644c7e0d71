"""The daemon's side of promotion with reversion: it trades the promoted parameters and reverts them when their live
record falls outside their out-of-sample expectation.

:class:`PromotedParams` owns the strategy registry the daemon's agents read. At start-up and before every iteration
(:meth:`PromotedParams.before_iteration`) it

1. checks the live record of each champion (:func:`live_verdict`) and reverts a champion outside its band to the
   previous champion (recorded: the version's status ``reverted`` with the reason, and a ``breaker_events`` row named
   ``promotion`` that notifications pick up; logged as a warning);
2. reads the champion versions (``promoted_configs``) and rebuilds, in place, each strategy whose parameters changed
   (the configured ``STRATEGY_PARAMS`` with the champion's parameters over them). A version promoted while an
   iteration runs is therefore traded from the next iteration on; until then the current one stays the champion.

**Reversion rule** (:func:`live_verdict`): the live record is the daemon's equity at the last snapshot of each New York
session since ``promoted_at``, its daily returns counted from the first of those sessions. The champion is reverted when

* its drawdown from the highest equity since promotion exceeds ``DRAWDOWN_MULTIPLE`` (1.5) times the out-of-sample
  max drawdown (checked from the second session on), or
* after at least ``MIN_SESSIONS`` (20) daily returns, their mean is below the lower bound of a one-sided 95 % interval
  for the mean of that many sessions drawn from the out-of-sample distribution:
  ``mean_oos - 1.645 * std_oos / sqrt(n)``.

The live equity is the account's (every strategy the daemon trades), so the rule judges the promoted configuration by
the account it runs in. Nothing here ever stops the iteration: a failure to read or write the versions is logged and
the current registry is kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from loguru import logger
from sqlalchemy import Engine

from core.kernel.clock import Clock
from core.persistence.promotions import PromotedConfig, active_versions, daemon_equity_since, revert_promotion
from core.persistence.repository import Repository
from strategies.base import InvalidStrategyParams, Strategy
from strategies.registry import STRATEGY_CLASSES, build_registry

__all__ = [
    "DRAWDOWN_MULTIPLE",
    "MIN_SESSIONS",
    "Z_95",
    "PromotedParams",
    "chain_guards",
    "live_verdict",
    "session_returns",
]

MIN_SESSIONS = 20
Z_95 = 1.645  # one-sided 95 %
DRAWDOWN_MULTIPLE = 1.5
_NEW_YORK = ZoneInfo("America/New_York")


def session_returns(snapshots: Sequence[tuple[datetime, Decimal]]) -> list[float]:
    """Daily returns of the equity at the last snapshot of each New York session (the first session is the base)."""
    closes: dict[Any, float] = {}
    for at, equity in snapshots:
        closes[at.astimezone(_NEW_YORK).date()] = float(equity)
    values = [closes[d] for d in sorted(closes)]
    return [b / a - 1.0 for a, b in zip(values, values[1:], strict=False) if a > 0]


def live_verdict(expectation: Mapping[str, Any], returns: Sequence[float]) -> str | None:
    """Why the live ``returns`` fall outside the out-of-sample ``expectation`` (the rule of the module doc), or
    ``None`` while they are inside it."""
    oos_dd = float(expectation.get("max_drawdown") or 0.0)
    multiple = float(expectation.get("drawdown_multiple", DRAWDOWN_MULTIPLE))
    equity, peak, worst = 1.0, 1.0, 0.0
    for r in returns:
        equity *= 1.0 + r
        peak = max(peak, equity)
        worst = max(worst, 1.0 - equity / peak)
    if oos_dd > 0 and worst > multiple * oos_dd:
        return f"live drawdown {worst:.2%} beyond {multiple:g} x the out-of-sample max drawdown {oos_dd:.2%}"
    n = len(returns)
    minimum = int(expectation.get("min_sessions", MIN_SESSIONS))
    if n < max(minimum, 2):
        return None
    mean = math.fsum(returns) / n
    z = float(expectation.get("z", Z_95))
    bound = float(expectation["mean"]) - z * float(expectation["std"]) / math.sqrt(n)
    if mean < bound:
        return (
            f"live mean daily return {mean:.4%} over {n} sessions below the lower bound {bound:.4%} of the "
            f"one-sided 95% interval of the out-of-sample expectation (mean {float(expectation['mean']):.4%})"
        )
    return None


class PromotedParams:
    """The daemon's strategy registry, kept at the champion versions (see the module doc)."""

    def __init__(
        self, engine: Engine, repository: Repository, run_id: str, wall: Clock, overrides: Mapping[str, Any]
    ) -> None:
        self._engine = engine
        self._repository = repository
        self._run_id = run_id
        self._wall = wall
        self._overrides = {name: dict(params) for name, params in overrides.items()}
        self._strategies: dict[str, Strategy] = dict(build_registry(self._overrides))
        self._applied: dict[str, int | None] = {}
        self.registry: Mapping[str, Strategy] = MappingProxyType(self._strategies)
        self.before_iteration()

    @property
    def versions(self) -> dict[str, int | None]:
        """The version each strategy trades (``None``: the configured parameters)."""
        return {name: self._applied.get(name) for name in self._strategies}

    def before_iteration(self) -> None:
        try:
            champions = active_versions(self._engine)
            for champion in list(champions.values()):
                if self._revert_if_outside(champion):
                    champions = active_versions(self._engine)
            self._apply(champions)
        except Exception as exc:  # never stop an iteration: trade the current registry
            logger.opt(exception=exc).error("promoted parameters not read: {}", exc)

    def _revert_if_outside(self, champion: PromotedConfig) -> bool:
        returns = session_returns(daemon_equity_since(self._engine, champion.promoted_at))
        reason = live_verdict(champion.expectation, returns)
        if reason is None:
            return False
        now = self._wall.now()
        reinstated = revert_promotion(self._engine, champion.version, reason=reason, at=now)
        target = f"v{reinstated.version}" if reinstated is not None else "configured"
        self._repository.record_breaker_events(
            self._run_id,
            [
                {
                    "name": "promotion",
                    "from_state": f"v{champion.version}",
                    "to_state": target,
                    "reason": f"{champion.strategy} version {champion.version} reverted: {reason}",
                    "at": now,
                    "details": {
                        "event": "reverted",
                        "strategy": champion.strategy,
                        "version": champion.version,
                        "reinstated": reinstated.version if reinstated is not None else None,
                        "sessions": len(returns),
                        "expectation": champion.expectation,
                    },
                }
            ],
        )
        logger.warning(
            "promotion: {} version {} reverted to {}: {}", champion.strategy, champion.version, target, reason
        )
        return True

    def _apply(self, champions: Mapping[str, PromotedConfig]) -> None:
        for name, cls in STRATEGY_CLASSES.items():
            champion = champions.get(name)
            version = champion.version if champion is not None else None
            if name in self._applied and self._applied[name] == version:
                continue
            params = {**self._overrides.get(name, {}), **(champion.params if champion is not None else {})}
            try:
                self._strategies[name] = cls(**params)
            except InvalidStrategyParams as exc:
                logger.error("promotion: {} version {} not applied: {}", name, version, exc)
                self._applied[name] = version
                continue
            if name in self._applied or version is not None:
                logger.info(
                    "promotion: {} now trades {} ({})",
                    name,
                    f"version {version}" if version else "the configured parameters",
                    params,
                )
            self._applied[name] = version


def chain_guards(first: Callable[[], None] | None, then: Callable[[], None]) -> Callable[[], None]:
    """The orchestrator's guard running ``first`` (the lock check, which may stop the daemon) and then ``then``."""

    def guard() -> None:
        if first is not None:
            first()
        then()

    return guard
