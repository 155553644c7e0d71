"""Calibration of entry confidences against trade outcomes.

Pure functions: no I/O, no clock.

Conventions
-----------
* A confidence is a probability in ``[0, 1]`` that the trade will make money.
* An **outcome** is ``1`` when the closed trade made money, i.e. its ``pnl`` (net of costs) is ``> 0``, else ``0``
  (a break-even trade did not make money).
* **Brier score** ``mean((p_i - o_i) ** 2)``: 0 is perfect, 0.25 is what a constant 0.5 forecast scores, 1 is
  maximally wrong. Undefined for no forecasts (``ValueError``).
* **Reliability table**: ``bins`` equal-width bins over ``[0, 1]``; bin ``j`` is ``[j/bins, (j+1)/bins)`` except the
  last, which is closed (``[.., 1]``) so a confidence of exactly 1 is counted. A confidence ``p`` goes to bin
  ``min(floor(p * bins), bins - 1)``. Every bin is returned, empty ones with ``count == 0`` and ``None`` for
  ``mean_confidence`` and ``hit_rate``, so the table always has the same shape. ``hit_rate`` is the share of
  outcomes equal to 1 in the bin; a calibrated forecaster has ``hit_rate ~ mean_confidence`` in every bin.
* :func:`calibration_report` skips trades whose ``entry_confidence`` is ``None`` and says how many it skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from core.analytics.metrics import ClosedTradeLike


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    hit_rate: float | None


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    total_trades: int
    scored_trades: int
    skipped_trades: int  # trades without entry_confidence
    brier_score: float | None  # None when no trade has a confidence
    mean_confidence: float | None
    hit_rate: float | None
    reliability: tuple[ReliabilityBin, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _validate(confidences: Iterable[float], outcomes: Iterable[int | bool]) -> tuple[list[float], list[int]]:
    probs = [float(p) for p in confidences]
    outs: list[int] = []
    for o in outcomes:
        if o not in (0, 1):  # True/False compare equal to 1/0
            raise ValueError(f"outcomes must be 0 or 1, got {o!r}")
        outs.append(int(o))
    if len(probs) != len(outs):
        raise ValueError(f"{len(probs)} confidences but {len(outs)} outcomes")
    for p in probs:
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"confidences must be in [0, 1], got {p!r}")
    return probs, outs


def brier_score(confidences: Iterable[float], outcomes: Iterable[int | bool]) -> float:
    """Mean squared difference between confidence and outcome (0 best, 1 worst)."""
    probs, outs = _validate(confidences, outcomes)
    if not probs:
        raise ValueError("the Brier score of no forecasts is undefined")
    return math.fsum((p - o) ** 2 for p, o in zip(probs, outs, strict=True)) / len(probs)


def reliability_table(
    confidences: Iterable[float], outcomes: Iterable[int | bool], bins: int = 5
) -> list[ReliabilityBin]:
    """Equal-width reliability bins over [0, 1] (the last one closed); every bin is returned."""
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    probs, outs = _validate(confidences, outcomes)
    members: list[list[tuple[float, int]]] = [[] for _ in range(bins)]
    for p, o in zip(probs, outs, strict=True):
        members[_bin_index(p, bins)].append((p, o))
    table = []
    for j, group in enumerate(members):
        count = len(group)
        table.append(
            ReliabilityBin(
                lower=j / bins,
                upper=(j + 1) / bins,
                count=count,
                mean_confidence=math.fsum(p for p, _ in group) / count if count else None,
                hit_rate=sum(o for _, o in group) / count if count else None,
            )
        )
    return table


def _bin_index(p: float, bins: int) -> int:
    """``min(floor(p * bins), bins - 1)``, corrected so it agrees with the reported float edges ``j / bins``.

    ``p * bins`` is rounded, so for a confidence on an edge it can land a hair below the integer; the correction
    compares ``p`` with the very edges the table reports, so ``lower <= p < upper`` holds for every member.
    """
    j = min(math.floor(p * bins), bins - 1)
    if j + 1 < bins and p >= (j + 1) / bins:
        j += 1
    elif j > 0 and p < j / bins:
        j -= 1
    return j


def calibration_report(trades: Sequence[ClosedTradeLike], bins: int = 5) -> CalibrationReport:
    """Brier score and reliability table of the trades that carry an entry confidence."""
    total = 0
    probs: list[float] = []
    outs: list[int] = []
    for trade in trades:
        total += 1
        if trade.entry_confidence is None:
            continue
        probs.append(float(trade.entry_confidence))
        outs.append(1 if trade.pnl > 0 else 0)
    scored = len(probs)
    return CalibrationReport(
        total_trades=total,
        scored_trades=scored,
        skipped_trades=total - scored,
        brier_score=brier_score(probs, outs) if scored else None,
        mean_confidence=math.fsum(probs) / scored if scored else None,
        hit_rate=sum(outs) / scored if scored else None,
        reliability=tuple(reliability_table(probs, outs, bins)),
    )
