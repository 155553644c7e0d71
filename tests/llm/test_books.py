"""The run's LLM books as the composition root builds them: the daemon's budget and provider ranking restored from
the calls recorded in the database, a replay's budget per simulated day and empty."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from core.kernel.clock import LiveClock, SimulatedClock
from core.persistence.db import open_database
from core.persistence.repository import Repository
from core.runtime.llm_setup import llm_books
from tests.conftest import make_settings


def _call(provider: str, model: str, outcome: str, latency_ms: float, purpose: str, at: datetime) -> dict:
    return {
        "purpose": purpose,
        "provider": provider,
        "model": model,
        "prompt_version": "v",
        "prompt_hash": "0" * 64,
        "input_tokens": 100,
        "output_tokens": 10,
        "cost_usd": Decimal("0.001"),
        "latency_ms": latency_ms,
        "retries": 0,
        "outcome": outcome,
        "validation_errors": [],
        "symbols": ["AAPL"],
        "error": None,
        "started_at": at,
    }


def test_daemon_books_restore_todays_spend_of_both_purposes_and_the_measured_provider_order(tmp_path) -> None:
    settings = make_settings(tmp_path)
    repository = Repository(open_database(settings.database_url))
    now = datetime.now(UTC)
    repository.create_run(
        "daemon-1",
        kind="daemon",
        broker="simulated",
        data_provider="files",
        started_at=now,
        initial_cash=Decimal(100_000),
        symbols=["AAPL"],
        config={},
    )
    calls = [_call("groq", "openai/gpt-oss-120b", "invalid", 900.0, "selection", now) for _ in range(5)]
    calls += [_call("anthropic", "claude-haiku-4-5", "ok", 1500.0, "selection", now) for _ in range(5)]
    calls.append(_call("anthropic", "claude-sonnet-4-6", "unfaithful", 800.0, "narrative", now))
    repository.record_llm_calls("daemon-1", None, calls)

    books = llm_books(settings, kind="daemon", clock=LiveClock(), wall=LiveClock(), repository=repository, run_id="d")

    assert books.live and not books.blind
    usage = books.budget.usage()
    assert usage.calls == 11 and usage.usd == Decimal("0.011")  # the narration counts against the same budget
    providers = [("groq", "openai/gpt-oss-120b"), ("anthropic", "claude-haiku-4-5")]
    assert books.ranking is not None and books.ranking.order(providers, lambda p: p) == providers[::-1]

    replay = llm_books(
        settings,
        kind="replay",
        clock=SimulatedClock(datetime(2021, 3, 1, 21, tzinfo=UTC)),
        wall=LiveClock(),
        repository=repository,
        run_id="r",
    )
    assert replay.blind and not replay.live
    assert replay.budget.usage().calls == 0 and replay.budget.usage().max_calls == settings.llm_sim_daily_max_calls
    assert replay.budget.usage().day.isoformat() == "2021-03-01"  # the simulated day, not today
    repository.engine.dispose()
