"""Risk engine: pure, deterministic entry/exit gates, position sizing and the trading-state machine.

The Risk agent builds a :class:`PortfolioView` from the broker account, one :class:`Candidate` per validated BUY
signal, and calls :func:`step` (the trading state, with the drawdown lock and halt) once per iteration, then :func:`evaluate_entry` / :func:`evaluate_exit` per
signal. Every refusal is a ``Denial`` whose ``rule`` is a stable :class:`RiskRule` name, whose ``values`` hold the
numbers that refused, and whose ``reason`` is a sentence; every approval carries all evaluated rules in ``checks``.
No function here reads a clock, a file or the network (``load_sector_map`` is the one explicit I/O helper).
The per-symbol features (ATR, average dollar volume, returns) over the shared frame cache are in
:mod:`core.risk.features`.
"""

from core.risk.entries import Sizing, decide_entry, entry_intent, parse_sizing, wanted_quantity
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
from core.risk.portfolio import portfolio_view, with_returns
from core.risk.rules import apply_approval, evaluate_entry, evaluate_exit, position_rules, reduced_limits
from core.risk.sectors import DEFAULT_SECTOR_MAP_PATH, SectorMapError, load_sector_map, parse_sector_map, sector_of
from core.risk.sizing import KellyEstimate, confidence_scale, kelly_estimate, max_units, size_position
from core.risk.state import (
    TRADING_STATE_EVENT,
    DrawdownRules,
    LossMetrics,
    Protection,
    Transition,
    advance,
    describe_episode,
    loss_metrics,
    next_state,
    reset_protection,
    reset_saved,
    reset_state,
    restore_protection,
    session_of,
    sessions_in,
    step,
    trading_episodes,
    transition_record,
)

__all__ = [
    "DEFAULT_SECTOR_MAP_PATH",
    "TRADING_STATE_EVENT",
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
    "Sizing",
    "SizingResult",
    "TradingState",
    "Transition",
    "advance",
    "apply_approval",
    "confidence_scale",
    "decide_entry",
    "describe_episode",
    "entry_intent",
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
    "parse_sizing",
    "portfolio_view",
    "position_rules",
    "position_value",
    "reduced_limits",
    "reset_protection",
    "reset_saved",
    "reset_state",
    "restore_protection",
    "sector_of",
    "session_of",
    "sessions_in",
    "size_position",
    "step",
    "trading_episodes",
    "transition_record",
    "wanted_quantity",
    "with_returns",
]
