"""``backtest --llm`` over a local fake of the Groq API (the real groq SDK client): blinded prompts, a budget per
simulated day, and the LLM vs deterministic choices in the result and the summary."""

from __future__ import annotations

import json
import re

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from core.persistence.db import normalise_url
from core.persistence.models import LLMCallRow, Run
from tests.backtest.helpers import backtest_cli
from tests.fakes.llm_server import serve_fake_llm


def test_backtest_llm_when_the_budget_allows_one_call_per_simulated_day_then_every_day_starts_afresh(
    settings_factory,
) -> None:
    with serve_fake_llm() as (fake, url):
        settings = settings_factory(
            groq_api_key="gsk_backtest_CANARY",
            groq_base_url=url,
            anthropic_api_key=None,
            audit_narrative="off",
            llm_chunk_size=1,
            llm_sim_daily_max_calls=1,
        )
        argv = ["--symbols", "AAPL,SPY", "--start", "2021-03-01", "--end", "2021-03-05", "--llm"]
        code, out, err = backtest_cli(settings, *argv, "--json")
        assert code == 0, err
        text_code, text, _ = backtest_cli(settings, *argv)

    result = json.loads(out)
    # 5 sessions x 2 symbols, one call a simulated day: one symbol by the LLM, the other deterministic
    assert result["llm"]["llm_choices"] == 5 and result["llm"]["deterministic_choices"] == 5
    assert result["llm"]["calls"] == 5 and float(result["llm"]["cost_usd"]) > 0
    assert text_code == 0 and "strategy selection: LLM choices 5, deterministic 5; 5 LLM calls" in text
    for body in fake.bodies:
        sent = str(body)
        assert "AAPL" not in sent and "SPY" not in sent and not re.search(r"\d{4}-\d{2}-\d{2}", sent)
    with Session(create_engine(normalise_url(settings.database_url))) as s:
        run = s.get(Run, result["run_id"])
        assert run is not None and run.config["llm_prompts"] == "blinded"
        assert run.config["llm_budget_switch"]["scope"] == "per simulated day"
        outcomes = [c.outcome for c in s.scalars(select(LLMCallRow).where(LLMCallRow.run_id == run.id))]
        assert outcomes.count("ok") == 5 and outcomes.count("budget_exceeded") == 5
