"""The engine's read-at-t helpers agree with the primitives they wrap: vif_at with vif_of over the window, and
assessment_at with assess of the record and volatility as they stand at the decision bar."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

import core.quant as quant
from core.kernel.domain import Action, Signal
from core.quant import QuantConfig, assess, assessment_at, signal_record, vif_at, vif_of, volatility_profile
from tests.quant.helpers import reference_record

CLOSE = [100, 101, 110, 100, 97, 95, 100, 90, 80, 85, 88, 91]
ACTIONS = [1, 0, 0, -1, 0, 0, 1, 0, -1, 1, 1, 0]


def test_vif_at_when_the_window_starts_inside_the_frame_then_it_is_vif_of_the_last_window_rows() -> None:
    rng = np.random.default_rng(3)
    indicators = {"a": rng.normal(size=50), "b": rng.normal(size=50), "c": rng.normal(size=50)}
    indicators["c"][40] = np.nan

    got = vif_at(indicators, ("a", "c"), 45, window=20, min_rows=8)

    expected = vif_of(np.column_stack([indicators["a"][26:46], indicators["c"][26:46]]), ("a", "c"), min_rows=8)
    assert got == expected and got.rows == 19
    assert vif_at(indicators, (), 5, window=20, min_rows=8).note == "no indicator features reported"


def test_assessment_at_when_read_at_a_decision_bar_then_it_assesses_the_record_complete_at_that_bar() -> None:
    config = QuantConfig(horizon=2, vol_recent=3, vol_long=6)
    record = signal_record(np.array(ACTIONS), np.array(CLOSE, dtype=float), 2, 20)
    vol = volatility_profile(np.array(CLOSE, dtype=float), 3, 6)
    vif = vif_of(np.empty((0, 0)), (), min_rows=8)

    got = assessment_at(config, record, vol, vif, 9, 0.5)

    ref = reference_record(ACTIONS, CLOSE, 9, 2, 20)
    expected = assess(
        config,
        n=ref.n,
        wins=ref.wins,
        expectancy=ref.expectancy,
        sharpe=ref.sharpe,
        max_drawdown=ref.max_drawdown,
        vol_recent=float(vol.recent[9]),
        vol_long=float(vol.long[9]),
        vif=vif,
        strength=0.5,
    )
    assert (got.n, got.wins) == (3, 2)
    assert got.confidence == expected.confidence and got.factors == expected.factors
    assert quant.components(config, got)["signals"] == 3 and "2/3 right" in quant.reason(config, _buy(), got)


def _buy() -> Signal:
    return Signal("AAA", "fake", Action.BUY, 0.5, 85.0, datetime(2020, 1, 14, tzinfo=UTC))
