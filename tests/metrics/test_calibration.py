"""core.analytics.calibration checked against numbers worked out by hand."""

from __future__ import annotations

import pytest

from core.analytics.calibration import ReliabilityBin, brier_score, calibration_report, reliability_table
from tests.metrics.helpers import make_trade

CONFIDENCES = [0.9, 0.85, 0.8, 0.65, 0.1, 0.3, 1.0]
OUTCOMES = [1, 0, 1, 0, 0, 1, 1]


def test_brier_score_when_seven_forecasts_then_mean_squared_error() -> None:
    # (0.9-1)^2 = 0.01, (0.85-0)^2 = 0.7225, (0.8-1)^2 = 0.04, (0.65-0)^2 = 0.4225,
    # (0.1-0)^2 = 0.01, (0.3-1)^2 = 0.49, (1.0-1)^2 = 0
    # sum = 1.695; / 7 = 0.242142857
    assert brier_score(CONFIDENCES, OUTCOMES) == pytest.approx(1.695 / 7, rel=1e-12)
    assert brier_score(CONFIDENCES, OUTCOMES) == pytest.approx(0.242143, abs=1e-6)


def test_brier_score_when_perfect_or_maximally_wrong_then_zero_or_one() -> None:
    assert brier_score([1.0, 0.0], [True, False]) == 0.0
    assert brier_score([0.0, 1.0], [1, 0]) == 1.0
    assert brier_score([0.5, 0.5], [1, 0]) == 0.25  # (0.25 + 0.25) / 2


@pytest.mark.parametrize(
    ("confidences", "outcomes", "match"),
    [
        ([], [], "no forecasts"),
        ([0.5], [1, 0], "outcomes"),
        ([1.2], [1], r"\[0, 1\]"),
        ([float("nan")], [1], r"\[0, 1\]"),
        ([0.5], [2], "0 or 1"),
    ],
)
def test_brier_score_when_inputs_invalid_then_value_error(
    confidences: list[float], outcomes: list[int], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        brier_score(confidences, outcomes)


def test_reliability_table_when_five_bins_then_counts_means_and_hit_rates_by_hand() -> None:
    table = reliability_table(CONFIDENCES, OUTCOMES, bins=5)

    # bin = min(floor(p * 5), 4): 0.9 -> 4, 0.85 -> 4, 0.8 -> 4 (4.0 is the lower edge of the last bin),
    # 0.65 -> 3, 0.1 -> 0, 0.3 -> 1, 1.0 -> min(5, 4) = 4 (the last bin is closed)
    assert [b.lower for b in table] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert [b.upper for b in table] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert [b.count for b in table] == [1, 1, 0, 1, 4]
    assert table[0] == ReliabilityBin(0.0, 0.2, 1, 0.1, 0.0)  # 0.1 lost
    assert table[1] == ReliabilityBin(0.2, 0.4, 1, 0.3, 1.0)  # 0.3 won
    assert table[2] == ReliabilityBin(0.4, 0.6, 0, None, None)  # empty bin kept, no NaN
    assert table[3].mean_confidence == pytest.approx(0.65) and table[3].hit_rate == 0.0
    # last bin: confidences 0.9, 0.85, 0.8, 1.0 -> mean 3.55 / 4 = 0.8875; outcomes 1, 0, 1, 1 -> 3 / 4 = 0.75
    assert table[4].mean_confidence == pytest.approx(0.8875)
    assert table[4].hit_rate == pytest.approx(0.75)


def test_reliability_table_when_confidence_on_an_edge_then_it_opens_the_upper_bin() -> None:
    # 0.2 and 0.4 are lower edges (bins are [lower, upper)); 15/22 * 22 rounds to 14.999999999999998 in floats,
    # yet 15/22 is the reported lower edge of bin 15, so it must land there, not in bin 14
    five = reliability_table([0.2, 0.4], [1, 0], bins=5)
    assert [b.count for b in five] == [0, 1, 1, 0, 0]

    twenty_two = reliability_table([15 / 22], [1], bins=22)
    (member,) = [b for b in twenty_two if b.count]
    assert member.lower == 15 / 22
    assert member.lower <= 15 / 22 < member.upper


def test_reliability_table_when_bins_not_positive_then_value_error() -> None:
    with pytest.raises(ValueError, match="bins"):
        reliability_table([0.5], [1], bins=0)


def test_calibration_report_when_some_trades_lack_confidence_then_skipped_and_counted() -> None:
    trades = [
        make_trade(10.0, entry_confidence=0.8, index=0),  # made money -> outcome 1
        make_trade(0.0, entry_confidence=0.6, index=1),  # break-even did not make money -> outcome 0
        make_trade(5.0, entry_confidence=None, index=2),  # skipped
        make_trade(-4.0, entry_confidence=0.3, index=3),  # lost -> outcome 0
        make_trade(-1.0, entry_confidence=None, index=4),  # skipped
    ]

    report = calibration_report(trades)

    assert (report.total_trades, report.scored_trades, report.skipped_trades) == (5, 3, 2)
    # Brier: (0.8 - 1)^2 + (0.6 - 0)^2 + (0.3 - 0)^2 = 0.04 + 0.36 + 0.09 = 0.49; / 3 = 0.163333
    assert report.brier_score == pytest.approx(0.49 / 3, rel=1e-12)
    assert report.mean_confidence == pytest.approx(1.7 / 3)  # (0.8 + 0.6 + 0.3) / 3
    assert report.hit_rate == pytest.approx(1 / 3)
    # bins: 0.3 -> [0.2, 0.4), 0.6 -> [0.6, 0.8), 0.8 -> [0.8, 1.0]
    assert [b.count for b in report.reliability] == [0, 1, 0, 1, 1]
    assert report.as_dict()["skipped_trades"] == 2


def test_calibration_report_when_no_confidences_then_none_scores_and_empty_bins() -> None:
    report = calibration_report([make_trade(3.0), make_trade(-2.0, index=1)])

    assert (report.total_trades, report.scored_trades, report.skipped_trades) == (2, 0, 2)
    assert report.brier_score is None and report.hit_rate is None and report.mean_confidence is None
    assert [b.count for b in report.reliability] == [0, 0, 0, 0, 0]


def test_calibration_report_when_no_trades_then_zero_counts() -> None:
    report = calibration_report([])

    assert (report.total_trades, report.scored_trades, report.skipped_trades) == (0, 0, 0)
    assert report.brier_score is None
