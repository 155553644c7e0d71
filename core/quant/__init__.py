"""Quant engine: a signal's validated confidence from its strategy's own track record (pure, no agents, no I/O).

Everything here is deterministic and causal: at the decision bar *t* (``SymbolBars.end - 1``) only bars ``<= t`` are
read. History statistics are computed vectorised once per (symbol, strategy, bars frame) and then read at *t* with one
``searchsorted`` (O(log n)); only the small VIF regression is per-decision work. The Quant agent
(``agents/quant_agent.py``) keeps these precomputations in the runtime's shared ``FrameCache`` and runs the VIF for
BUY/SELL signals only, memoised per (symbol, strategy, decision index).

Modules, one per part of the method (each docstring holds its part of the specification):

* :mod:`core.quant.config` — :class:`QuantConfig`, every parameter with its default;
* :mod:`core.quant.records` — the track record (hit rate, expectancy, Sharpe, drawdown) for every count of complete
  signals: :class:`SignalRecord`, :func:`signal_record`;
* :mod:`core.quant.volatility` — the volatility regime: :class:`VolatilityProfile`, :func:`volatility_profile`;
* :mod:`core.quant.vif` — multicollinearity of the reported indicators: :class:`VifResult`, :func:`vif_of`,
  :func:`vif_at`, :func:`variance_inflation`;
* :mod:`core.quant.assessment` — the confidence formula and what is recorded of it: :class:`Assessment`,
  :func:`assess`, :func:`assessment_at`, :func:`components`, :func:`decision_inputs`, :func:`reason`,
  :func:`judge_review`, :func:`num`.
"""

from core.quant.assessment import (
    Assessment,
    assess,
    assessment_at,
    components,
    decision_inputs,
    judge_review,
    num,
    reason,
)
from core.quant.config import QuantConfig
from core.quant.records import SignalRecord, signal_record
from core.quant.vif import VifResult, variance_inflation, vif_at, vif_of
from core.quant.volatility import VolatilityProfile, volatility_profile

__all__ = [
    "Assessment",
    "QuantConfig",
    "SignalRecord",
    "VifResult",
    "VolatilityProfile",
    "assess",
    "assessment_at",
    "components",
    "decision_inputs",
    "judge_review",
    "num",
    "reason",
    "signal_record",
    "variance_inflation",
    "vif_at",
    "vif_of",
    "volatility_profile",
]
