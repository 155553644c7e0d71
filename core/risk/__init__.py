"""Risk engine: pure, deterministic entry/exit gates, position sizing and the trading-state machine.

The Risk agent builds a :class:`PortfolioView` from the broker account, one :class:`Candidate` per validated BUY
signal, and calls :func:`step` (the trading state, with the drawdown lock and halt) once per iteration, then :func:`evaluate_entry` / :func:`evaluate_exit` per
signal. Every refusal is a ``Denial`` whose ``rule`` is a stable :class:`RiskRule` name, whose ``values`` hold the
numbers that refused, and whose ``reason`` is a sentence; every approval carries all evaluated rules in ``checks``.
No function here reads a clock, a file or the network (``load_sector_map`` is the one explicit I/O helper).
"""

from core.risk.exposure import exposure_by_bucket, gross_exposure, position_value
from core.risk.models import (
    UNKNOWN_BUCKET,
    Candidate,
    PortfolioView,
    PositionView,
    RiskLimits,
    RiskRule,
    SizingResult,
    TradingState,
    normalise_bucket,
)
from core.risk.rules import apply_approval, evaluate_entry, evaluate_exit, position_rules, reduced_limits
from core.risk.sectors import DEFAULT_SECTOR_MAP_PATH, SectorMapError, load_sector_map, parse_sector_map, sector_of
from core.risk.sizing import KellyEstimate, confidence_scale, kelly_estimate, max_units, size_position
from core.risk.state import (
    DrawdownRules,
    LossMetrics,
    Protection,
    Transition,
    describe_episode,
    loss_metrics,
    next_state,
    reset_protection,
    reset_state,
    sessions_in,
    step,
    trading_episodes,
)

__all__ = [
    "DEFAULT_SECTOR_MAP_PATH",
    "UNKNOWN_BUCKET",
    "Candidate",
    "DrawdownRules",
    "KellyEstimate",
    "LossMetrics",
    "PortfolioView",
    "PositionView",
    "Protection",
    "RiskLimits",
    "RiskRule",
    "SectorMapError",
    "SizingResult",
    "TradingState",
    "Transition",
    "apply_approval",
    "confidence_scale",
    "describe_episode",
    "evaluate_entry",
    "evaluate_exit",
    "exposure_by_bucket",
    "gross_exposure",
    "kelly_estimate",
    "load_sector_map",
    "loss_metrics",
    "max_units",
    "next_state",
    "normalise_bucket",
    "parse_sector_map",
    "position_rules",
    "position_value",
    "reduced_limits",
    "reset_protection",
    "reset_state",
    "sector_of",
    "sessions_in",
    "size_position",
    "step",
    "trading_episodes",
]
