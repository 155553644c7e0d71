"""The database scrubber: configured secrets never reach a table, whatever the column (text or JSON), on SQLite and
PostgreSQL; and the run's recorded configuration masks URL credentials."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import MetaData, select

from core.runtime.app import public_config
from core.kernel.domain import Decision
from core.persistence.db import open_database
from core.persistence.repository import IterationRecord, Repository
from tests.conftest import make_settings
from utils.secrets import SecretScrubber, install_database_scrubber

KEY = "sk-live-SCRUB-ME-0123456789"
QUOTED = 'pa"ss\\word-42'  # JSON-escaped inside serialised JSON
AT = datetime(2024, 3, 4, 21, 0, tzinfo=UTC)


def test_writes_when_text_and_json_carry_secrets_then_every_table_holds_only_the_mask(database_url: str) -> None:
    engine = open_database(database_url)
    install_database_scrubber(engine, [KEY, QUOTED, "ab"])  # too short to scrub: ignored
    repository = Repository(engine)
    repository.create_run(
        "run-1",
        kind="daemon",
        broker="alpaca-paper",
        data_provider="alpaca",
        started_at=AT,
        initial_cash=Decimal("1000"),
        symbols=["AAPL"],
        config={"note": f"echo {KEY}", "deep": [{"k": f"x {QUOTED} y"}]},
    )
    repository.record_iterations(
        [
            IterationRecord(
                run_id="run-1",
                iteration_id="run-1-000001",
                seq=1,
                as_of=AT,
                recorded_at=AT,
                status="ok",
                error=None,
                symbols_total=1,
                symbols_ok=1,
                data_quality=1.0,
                decisions=[
                    Decision("strategy", "AAPL", "chose", f"the LLM said {KEY}", {"answer": f"{KEY} and {QUOTED}"})
                ],
                report_kind="llm",
                report_text=f"Summary by {KEY}.",
                report_facts={"rejected_text": KEY},
            )
        ]
    )
    repository.put_state("notes", {"why": KEY}, AT)

    metadata = MetaData()
    metadata.reflect(engine)
    texts = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                texts.append(
                    " ".join(json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v) for v in row)
                )
    engine.dispose()
    joined = "\n".join(texts)
    assert KEY not in joined and "ss\\\\word-42" not in joined and 'ss"' not in joined
    assert "the LLM said ***" in joined and "Summary by ***." in joined


def test_scrubber_when_values_are_nested_then_keys_and_values_are_masked() -> None:
    scrubber = SecretScrubber([KEY])

    assert scrubber.value({KEY: [f"a{KEY}b", (KEY,)], "n": 3}) == {"***": ["a***b", ("***",)], "n": 3}
    assert scrubber.value(KEY.encode()) == b"***"
    assert not SecretScrubber(["abc", ""])


def test_public_config_when_urls_carry_credentials_then_they_are_masked(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        alpaca_data_url="https://user:proxy-pass-1@proxy.example.com:8443/alpaca",
        groq_base_url="https://tokenonly@llm-proxy.example.com",
        anthropic_base_url="https://api.anthropic.com",
        groq_api_key="gsk_config_secret",
    )

    config = public_config(settings)

    assert config["alpaca_data_url"] == "https://***:***@proxy.example.com:8443/alpaca"
    assert config["groq_base_url"] == "https://***@llm-proxy.example.com"
    assert config["anthropic_base_url"] == "https://api.anthropic.com"
    text = json.dumps(config)
    assert "proxy-pass-1" not in text and "tokenonly" not in text and "gsk_config_secret" not in text
    assert {"proxy-pass-1", "tokenonly"} <= set(settings.secret_values)
