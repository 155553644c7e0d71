"""The confidence of one signal from its record, the volatility regime and the VIF, and what is recorded of it.

Confidence
----------
::

    base        = clip(2 × hit_rate × (0.5 + 0.5 × strength), 0, 1)
    confidence  = base × f_expectancy × f_sharpe × f_drawdown × f_volatility × f_vif          (each f in (0, 1])

    f_expectancy = negative_expectancy_factor (0.8)  if n >= min_record and expectancy < 0          else 1
    f_sharpe     = poor_sharpe_factor (0.85)         if n >= min_record and sharpe < sharpe_floor   else 1
    f_drawdown   = deep_drawdown_factor (0.85)       if n >= min_record and max_drawdown > max_drawdown_limit (0.30) else 1
    f_volatility = high_vol_factor (0.75)            if vol_ratio > vol_ratio_threshold              else 1
    f_vif        = collinear_factor (0.95)           if vif_max > vif_threshold                      else 1

A coin-flip record keeps the base between 0.5 (weakest signal) and 1.0 (strongest); the base is clipped *before* the
factors so a penalty always bites. ``min_record`` (5) keeps one or two unlucky signals from triggering the record
penalties (the shrunk hit rate already handles short records). ``sharpe_floor`` (−0.3) sits below zero on purpose:
a negative Sharpe is already a negative expectancy; below −0.3 over 20 signals (t-statistic ≈ −1.3) the strategy loses
consistently, not through one bad signal.

Every component, every factor and both confidences (deterministic and, after the optional review, final) are recorded
in the Decision's ``inputs`` and the ValidatedSignal's ``components`` (plain floats/ints; NaN becomes ``None``). A
review can only lower the confidence: see :func:`judge_review`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Mapping

from core.kernel.domain import Signal, frozen_map
from core.quant.config import ZERO_STD, QuantConfig
from core.quant.records import SignalRecord
from core.quant.vif import VifResult
from core.quant.volatility import VolatilityProfile


def num(value: float | int | None) -> float | None:
    """A JSON-friendly float: NaN/inf and None become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class Assessment:
    """Every number behind one validated confidence (deterministic part)."""

    n: int
    wins: int
    hit_rate: float
    expectancy: float | None
    sharpe: float | None
    max_drawdown: float | None
    vol_recent: float | None
    vol_long: float | None
    vol_ratio: float | None
    vif: VifResult
    strength: float
    base_raw: float
    factors: Mapping[str, float]
    confidence: float
    flags: tuple[str, ...] = field(default=())


def assess(
    config: QuantConfig,
    *,
    n: int,
    wins: int,
    expectancy: float | None,
    sharpe: float | None,
    max_drawdown: float | None,
    vol_recent: float | None,
    vol_long: float | None,
    vif: VifResult,
    strength: float,
) -> Assessment:
    """The confidence formula of the module docstring, with every factor and the reason for each penalty."""
    if not 0 <= wins <= n:
        raise ValueError(f"wins must be within [0, n], got wins={wins}, n={n}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be within [0, 1], got {strength!r}")
    hit_rate = (wins + 1) / (n + 2)
    base_raw = 2.0 * hit_rate * (0.5 + 0.5 * strength)
    vol_ratio = (
        vol_recent / vol_long if vol_recent is not None and vol_long is not None and vol_long > ZERO_STD else None
    )
    record = n >= config.min_record
    flags: list[str] = []
    factors = {"expectancy": 1.0, "sharpe": 1.0, "drawdown": 1.0, "volatility": 1.0, "vif": 1.0}
    if record and expectancy is not None and expectancy < 0:
        factors["expectancy"] = config.negative_expectancy_factor
        flags.append("negative expectancy")
    if record and sharpe is not None and sharpe < config.sharpe_floor:
        factors["sharpe"] = config.poor_sharpe_factor
        flags.append(f"Sharpe < {config.sharpe_floor:g}")
    if record and max_drawdown is not None and max_drawdown > config.max_drawdown_limit:
        factors["drawdown"] = config.deep_drawdown_factor
        flags.append(f"drawdown > {config.max_drawdown_limit:.0%}")
    if vol_ratio is not None and vol_ratio > config.vol_ratio_threshold:
        factors["volatility"] = config.high_vol_factor
        flags.append("high-volatility regime")
    if vif.max is not None and vif.max > config.vif_threshold:
        factors["vif"] = config.collinear_factor
        flags.append(f"collinear features ({vif.worst})")
    confidence = min(max(base_raw, 0.0), 1.0)
    for value in factors.values():
        confidence *= value
    confidence = min(max(confidence, 0.0), 1.0)
    return Assessment(
        n=n,
        wins=wins,
        hit_rate=hit_rate,
        expectancy=expectancy,
        sharpe=sharpe,
        max_drawdown=max_drawdown,
        vol_recent=vol_recent,
        vol_long=vol_long,
        vol_ratio=vol_ratio,
        vif=vif,
        strength=strength,
        base_raw=base_raw,
        factors=frozen_map(factors),
        confidence=confidence,
        flags=tuple(flags),
    )


def assessment_at(
    config: QuantConfig,
    record: SignalRecord,
    volatility: VolatilityProfile,
    vif: VifResult,
    t: int,
    strength: float,
) -> Assessment:
    """:func:`assess` of a signal of ``strength`` at the decision bar ``t``: the record as it stands with the signals
    complete at ``t`` and the volatility ending at ``t``."""
    k = record.completed_at(t)
    return assess(
        config,
        n=int(record.n[k]),
        wins=int(record.wins[k]),
        expectancy=num(record.expectancy[k]),
        sharpe=num(record.sharpe[k]),
        max_drawdown=num(record.max_drawdown[k]),
        vol_recent=num(volatility.recent[t]),
        vol_long=num(volatility.long[t]),
        vif=vif,
        strength=strength,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def components(config: QuantConfig, a: Assessment) -> dict[str, float | int | None]:
    """The ValidatedSignal's ``components``: every number of the assessment, JSON-friendly, in a fixed order."""
    c = config
    return {
        "strength": num(a.strength),
        "horizon": c.horizon,
        "lookback_signals": c.lookback_signals,
        "signals": a.n,
        "wins": a.wins,
        "hit_rate": num(a.hit_rate),
        "expectancy": num(a.expectancy),
        "sharpe": num(a.sharpe),
        "max_drawdown": num(a.max_drawdown),
        "vol_recent": num(a.vol_recent),
        "vol_long": num(a.vol_long),
        "vol_ratio": num(a.vol_ratio),
        "vif_max": num(a.vif.max),
        "vif_rows": a.vif.rows,
        "base_raw": num(a.base_raw),
        "base_confidence": num(min(max(a.base_raw, 0.0), 1.0)),
        **{f"factor_{name}": num(value) for name, value in a.factors.items()},
        "confidence_deterministic": num(a.confidence),
    }


def decision_inputs(a: Assessment, components: Mapping[str, float | int | None]) -> dict[str, Any]:
    """The Decision's ``inputs`` before the review: the components, each feature's VIF and the penalties applied."""
    return {
        **components,
        "vif": {name: num(v) for name, v in a.vif.by_feature.items()},
        "vif_note": a.vif.note,
        "vif_constant_features": list(a.vif.dropped),
        "penalties": list(a.flags),
    }


def reason(config: QuantConfig, signal: Signal, a: Assessment) -> str:
    """One sentence with the record, the regime, the VIF, the penalties and the confidence."""
    c = config
    text = (
        f"{signal.strategy} {signal.action.value}: {a.wins}/{a.n} right over {c.horizon} bars (hit {a.hit_rate:.2f}), "
        f"expectancy {_fmt(a.expectancy, '+.2%')}, Sharpe {_fmt(a.sharpe, '.2f')}, maxDD {_fmt(a.max_drawdown, '.1%')}, "
        f"vol ratio {_fmt(a.vol_ratio, '.2f')}, max VIF {_fmt(a.vif.max, '.1f')}, strength {a.strength:.2f}"
    )
    if a.flags:
        text += f"; penalised: {', '.join(a.flags)}"
    return text + f" -> confidence {a.confidence:.2f}"


def judge_review(answer: object, deterministic: float) -> tuple[float | None, str]:
    """(review confidence, status) of a reviewer's ``answer`` about a signal whose deterministic confidence is
    ``deterministic``; the status says how the review is used. ``None`` is an abstention; a non-number, NaN or value
    outside [0, 1] is an invalid answer (the deterministic confidence stands); the final confidence is
    ``min(deterministic, review)``, so a review can only lower it."""
    if answer is None:
        return None, "abstained"
    if (
        isinstance(answer, bool)
        or not isinstance(answer, (int, float))
        or not math.isfinite(answer)
        or not 0.0 <= answer <= 1.0
    ):
        return None, f"invalid answer {answer!r}: deterministic confidence kept"
    answer = float(answer)
    return answer, "lowered" if answer < deterministic else "not lower: deterministic confidence kept"
