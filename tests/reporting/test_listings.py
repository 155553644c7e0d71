"""The row listings of core.analytics.reporting (what `query_trades.py trades|orders|decisions|equity|runs` prints), called
directly on the hand-built ledger."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from core.analytics import reporting
from tests.reporting.factories import RUN_1, build_ledger


def test_list_trades_when_a_limit_is_given_then_the_most_recent_fills_oldest_first(tmp_path: Path) -> None:
    ledger = build_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    with Session(ledger.repo.engine) as session:
        every = reporting.list_trades(session, run_id=RUN_1)
        last_two = reporting.list_trades(session, run_id=RUN_1, limit=2)
    ledger.repo.engine.dispose()

    assert len(every) > 2
    assert [r["filled_at"] for r in every] == sorted(r["filled_at"] for r in every)
    assert [r["filled_at"] for r in last_two] == [r["filled_at"] for r in every[-2:]]  # ties: no order among them
    assert all(r in every for r in last_two)
    assert {r["run_id"] for r in every} == {RUN_1}


def test_list_decisions_when_an_action_pattern_and_inputs_are_asked_then_only_matching_rows_with_inputs(
    tmp_path: Path,
) -> None:
    ledger = build_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    with Session(ledger.repo.engine) as session:
        denied = reporting.list_decisions(session, action="denied:*", with_inputs=True)
        plain = reporting.list_decisions(session, action="denied:*")
    ledger.repo.engine.dispose()

    assert denied and all(r["action"].startswith("denied:") for r in denied)
    assert all("inputs" in r for r in denied) and not any("inputs" in r for r in plain)
    assert reporting.render_csv(plain).splitlines()[0].split(",") == list(plain[0])
