"""No configured secret reaches the database: ``replay --llm`` through the real wiring, with the real Groq and Anthropic
SDK clients talking to a local fake that echoes the API key in every answer (a selection reason, an audit narrative),
and proxy credentials written in ALPACA_DATA_URL and GROQ_BASE_URL. Every row of every table is searched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import pytest
from sqlalchemy import MetaData, create_engine, select

import main
from tests.conftest import BUNDLED_DAILY
from tests.e2e.helpers import JsonHandler, serve_locally
from tests.llm.fakes import anthropic_message, asked_from_schema, groq_completion, groq_schema

GROQ_KEY = "gsk_e2e_ECHOED_groq_key_5566778899"
ANTHROPIC_KEY = "sk-ant-ECHOED-anthropic-key-aabbccdd"
GROQ_PROXY_PASSWORD = "groqProxyPass-Zq81"
DATA_PROXY_PASSWORD = "dataProxyPass-Yw27"
GROQ_PROXY_BASIC = "cHJveHl1c2VyOmdyb3FQcm94eVBhc3MtWnE4MQ=="  # base64 of proxyuser:GROQ_PROXY_PASSWORD
SECRETS = (GROQ_KEY, ANTHROPIC_KEY, GROQ_PROXY_PASSWORD, DATA_PROXY_PASSWORD, GROQ_PROXY_BASIC)


class _EchoingLLM(JsonHandler):
    """Groq chat completions and Anthropic messages whose text repeats the API keys (a misbehaving endpoint)."""

    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.read_json()
        if self.path.endswith("/chat/completions"):
            _EchoingLLM.seen.append("groq")
            symbols, allowed = asked_from_schema(groq_schema(body))
            echoed = f"{GROQ_KEY} ({self.headers.get('authorization')})"
            answer = {
                "choices": [
                    {"symbol": s, "strategy": allowed[0], "reason": f"chosen for key {echoed}"} for s in symbols
                ]
            }
            payload: dict[str, Any] = groq_completion(json.dumps(answer))
            payload["model"] = body.get("model", payload["model"])
        else:
            _EchoingLLM.seen.append("anthropic")
            payload = anthropic_message(with_tool=False, stop_reason="end_turn", text=f"Summary by {ANTHROPIC_KEY}.")
        self.send_json(payload)


@pytest.fixture
def echoing_llm() -> Iterator[int]:
    _EchoingLLM.seen = []
    with serve_locally(_EchoingLLM) as server:
        yield server.server_address[1]


def test_replay_when_llms_echo_the_keys_and_urls_carry_passwords_then_no_table_holds_a_secret(
    echoing_llm: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = echoing_llm
    for name, value in {
        "LOG_DIR": str(tmp_path / "logs"),
        "DATA_DIR": str(BUNDLED_DAILY),
        "GROQ_API_KEY": GROQ_KEY,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "GROQ_BASE_URL": f"http://proxyuser:{GROQ_PROXY_PASSWORD}@127.0.0.1:{port}",
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ALPACA_DATA_URL": f"https://datauser:{DATA_PROXY_PASSWORD}@data-proxy.example.com",
        "LLM_SELECTION": "auto",
        "AUDIT_NARRATIVE": "auto",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("STRATEGY", raising=False)
    url = f"sqlite:///{tmp_path / 'secrets.db'}"

    assert main.main(["replay", "--llm", "--start", "2021-03-01", "--end", "2021-03-03", "--quiet", "--db", url]) == 0

    assert {"groq", "anthropic"} <= set(_EchoingLLM.seen)  # both echoing endpoints were really used
    engine = create_engine(url)
    metadata = MetaData()
    metadata.reflect(engine)
    found: list[str] = []
    scrubbed: set[str] = set()
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                text = " ".join(json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v) for v in row)
                found += [f"{table.name}: {secret}" for secret in SECRETS if secret in text]
                scrubbed.update(f"{table.name}: {m}" for m in ("chosen for key ***", "Summary by ***") if m in text)
        config = connection.execute(select(metadata.tables["runs"].c.config)).scalar_one()
    engine.dispose()
    assert found == []
    # the echoed keys reached the recorded rows, as ***: a selection reason and an audit narrative
    assert {"decisions: chosen for key ***", "audit_reports: Summary by ***"} <= scrubbed, scrubbed
    config = config if isinstance(config, dict) else json.loads(config)
    assert config["alpaca_data_url"] == "https://***:***@data-proxy.example.com"
    assert config["groq_base_url"] == f"http://***:***@127.0.0.1:{port}"
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("secrets.db*")).decode("latin-1")
    assert not [secret for secret in SECRETS if secret in raw]
