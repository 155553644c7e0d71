"""True walk-forward: each window's winner is chosen on its training sessions only and traded on the next ones."""

from __future__ import annotations

import argparse
import io
import json
from datetime import date

import pytest

from core.backtest.runner import BacktestConfig
from core.research.cli import add_optimize_parser, run_optimize_command
from core.research.objective import TrialSpec
from core.research.optimize import optimize
from core.research.study import StudySpec
from core.research.walkforward import windows
from tests.research.datasets import planted

DAYS = [date(2020, 1, 1).replace(day=d) for d in range(1, 11)]


def test_rolling_windows_move_on_by_the_test_length_and_anchored_ones_keep_their_start():
    rolling = windows(DAYS, 4, 2, anchored=False)
    assert rolling == [
        (DAYS[0], DAYS[3], DAYS[4], DAYS[5]),
        (DAYS[2], DAYS[5], DAYS[6], DAYS[7]),
        (DAYS[4], DAYS[7], DAYS[8], DAYS[9]),
    ]
    anchored = windows(DAYS, 4, 2, anchored=True)
    assert [w[0] for w in anchored] == [DAYS[0]] * 3
    assert [w[1:] for w in anchored] == [w[1:] for w in rolling]
    assert windows(DAYS, 8, 3, anchored=False) == []  # only complete test windows


@pytest.mark.slow
def test_walk_forward_trades_each_winner_out_of_sample_and_the_report_shows_it(settings_factory, tmp_path):
    bars = planted(tmp_path / "bars", symbols=1, sessions=330)
    settings = settings_factory(data_dir=bars)
    config = BacktestConfig(
        data_dir=bars, strategy="volatility_breakout", params={"length": 10}, shadow=False, calendar="data"
    )
    spec = StudySpec(TrialSpec(config), trials=5, seed=3, prune=False)
    outcome = optimize(settings, spec, walk_forward=(150, 80), rerun_best=True)
    wf = outcome.walk_forward
    assert len(wf.windows) == 2
    for window in wf.windows:
        assert window.train_end < window.test_start
        assert window.oos_equity.index[0].date() == window.test_start  # the test run starts at the test window
        assert window.oos_equity.index[-1].date() == window.test_end
        assert window.trials == 5 and 1 <= window.feasible <= 5
        assert window.params is not None and window.is_objective is not None
    assert len(wf.stitched) == sum(len(w.oos_equity) for w in wf.windows)
    assert wf.windows[1].study_name.endswith("-01") and wf.windows[0].study_name != outcome.spec.study_name
    expected = wf.oos_metrics.cagr / wf.is_cagr_mean
    assert wf.efficiency == pytest.approx(expected)

    from core.research.report import write_study_report

    path = write_study_report(tmp_path / "study.html", outcome.report_data())
    html = path.read_text()
    for anchor in ("summary", "winner", "overfitting", "stability", "history", "equity", "walk-forward", "trials"):
        assert f'id="{anchor}"' in html
    assert 'class="chosen"' in html  # the chosen point on the stability plot
    assert "walk-forward efficiency" in html
    assert "<script" not in html


def test_optimize_command_prints_one_json_object(settings_factory, tmp_path):
    bars = planted(tmp_path / "bars", symbols=1, sessions=200)
    settings = settings_factory(data_dir=bars)
    parser = argparse.ArgumentParser()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db")
    add_optimize_parser(parser.add_subparsers(dest="command"), [common])
    argv = ["optimize", "--strategy", "volatility_breakout", "--param", "length=10", "--data-dir", str(bars)]
    args = parser.parse_args([*argv, "--calendar", "data", "--trials", "2", "--no-prune", "--json"])
    out, err = io.StringIO(), io.StringIO()
    assert run_optimize_command(args, settings, stdout=out, stderr=err) == 0, err.getvalue()
    payload = json.loads(out.getvalue())
    assert payload["trials_by_state"].get("COMPLETE", 0) == 2
    assert payload["study"].startswith("volatility_breakout-sharpe-")
    assert payload["request"]["space"]["dimensions"] == {"k": {"float": [0.25, 5.0], "step": None, "log": False}}

    bad = parser.parse_args([*argv, "--param", "k=2", "--trials", "1"])  # every searchable parameter fixed
    assert run_optimize_command(bad, settings, stdout=io.StringIO(), stderr=err) == 2
    assert "fixed by --param" in err.getvalue()
