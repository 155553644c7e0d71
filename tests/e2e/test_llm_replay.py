"""``replay --llm`` through the real wiring, with GROQ_BASE_URL and ANTHROPIC_BASE_URL pointing at a local fake of
both APIs (the real groq and anthropic SDK clients): past-date prompts are blinded, the budget runs per simulated
day and its switch is printed once and recorded with the run, and the narratives' cost is in the run's LLM cost."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import main
from core.dashboard.queries import llm_usage
from core.persistence.models import AuditReportRow, LLMCallRow, Run
from tests.conftest import BUNDLED_DAILY
from tests.fakes.llm_server import serve_fake_llm

SYMBOLS = ["AAPL", "AIG", "BAC", "IBM", "IWM", "SPY"]
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@pytest.fixture
def llm_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("DATA_DIR", str(BUNDLED_DAILY))
    monkeypatch.setenv("SYMBOLS", ",".join(SYMBOLS))
    monkeypatch.setenv("GROQ_API_KEY", "gsk_e2e_CANARY_0000")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("AUDIT_NARRATIVE", "off")
    with serve_fake_llm() as (fake, url):
        monkeypatch.setenv("GROQ_BASE_URL", url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
        yield fake


def _replay(url: str, *extra: str) -> int:
    return main.main(
        ["replay", "--llm", "--start", "2021-03-01", "--end", "2021-03-05", "--quiet", "--db", url, *extra]
    )


def test_replay_llm_prompts_name_no_ticker_and_no_date(llm_env, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'blind.db'}"
    assert _replay(url) == 0

    groq = [b for b in llm_env.bodies if "response_format" in b]
    assert len(groq) == 5  # one selection per session
    for body in groq:
        sent = str(body)
        assert not [s for s in SYMBOLS if s in sent], sent[:300]
        assert not ISO_DATE.search(sent) and "2021" not in sent
    with Session(create_engine(url)) as s:
        run = s.scalars(select(Run)).one()
        assert run.config["llm_prompts"] == "blinded" and run.config["llm_blind_past"] is True
        calls = s.scalars(select(LLMCallRow)).all()
        assert {c.outcome for c in calls} == {"ok"} and set(calls[0].symbols["symbols"]) == set(SYMBOLS)


def test_replay_llm_unblinded_only_when_asked_with_a_warning_recorded(
    llm_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLM_BLIND_PAST", "false")
    url = f"sqlite:///{tmp_path / 'open.db'}"
    assert _replay(url) == 0

    assert "LLM_BLIND_PAST=false" in capsys.readouterr().out
    assert "AAPL" in str(llm_env.bodies[0])
    with Session(create_engine(url)) as s:
        run = s.scalars(select(Run)).one()
        assert run.config["llm_prompts"] == "unblinded" and run.config["llm_blind_past"] is False


def test_replay_llm_budget_runs_per_simulated_day_and_its_switch_is_printed_once_and_recorded(
    llm_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLM_CHUNK_SIZE", "2")  # 3 calls a session...
    monkeypatch.setenv("LLM_SIM_DAILY_MAX_CALLS", "2")  # ...2 allowed per simulated day
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    assert _replay(url) == 0

    out = capsys.readouterr().out
    assert out.count("LLM budget reached (per simulated day)") == 1
    with Session(create_engine(url)) as s:
        run = s.scalars(select(Run)).one()
        assert run.config["llm_budget_switch"]["scope"] == "per simulated day"
        assert run.config["llm_budget"] == {"scope": "per simulated day", "max_calls": 2, "max_usd": "0.5"}
        calls = s.scalars(select(LLMCallRow).order_by(LLMCallRow.started_at)).all()
        outcomes = [c.outcome for c in calls]
        assert outcomes.count("ok") == 10 and outcomes.count("budget_exceeded") == 5  # every day starts afresh
    assert "LLM choices 20, deterministic 10" in out  # the run summary says how symbols were chosen


def test_replay_llm_narratives_are_priced_and_in_the_run_cost(
    llm_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-e2e-CANARY-0000")
    monkeypatch.setenv("AUDIT_NARRATIVE", "auto")
    url = f"sqlite:///{tmp_path / 'narr.db'}"
    assert _replay(url) == 0

    with Session(create_engine(url)) as s:
        narratives = s.scalars(select(LLMCallRow).where(LLMCallRow.purpose == "narrative")).all()
        assert len(narratives) == 5
        assert all(c.cost_usd is not None and c.cost_usd > 0 and len(c.prompt_hash) == 64 for c in narratives)
        reports = s.scalars(select(AuditReportRow)).all()
        assert {r.kind for r in reports} == {"llm"}
        assert all("{" not in r.text and r.text.startswith("Risk approved ") for r in reports)
        run_id = s.scalars(select(Run.id)).one()
        usage = llm_usage(s, run_id)
        all_calls = s.scalars(select(LLMCallRow)).all()
        assert usage.cost_usd == sum((c.cost_usd for c in all_calls), Decimal(0))
        assert usage.unpriced_calls == 0
        assert set(usage.by_model["purpose"]) == {"selection", "narrative"}
