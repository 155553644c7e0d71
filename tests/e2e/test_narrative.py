"""Audit narration through the real wiring: ``replay --llm`` with ANTHROPIC_BASE_URL pointing at a local fake of the
Messages API (the real anthropic SDK client). A faithful narrative is kept; one stating a number that is not in the
facts is rejected and the deterministic template is recorded instead, with the rejected text and the reason."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import main
from core.persistence.models import AuditReportRow, LLMCallRow
from tests.conftest import BUNDLED_DAILY
from tests.e2e.helpers import JsonHandler, serve_locally

KEY = "sk-ant-e2e-CANARY-4242424242"


def _messages_api(text: str, seen: list[dict]) -> type[JsonHandler]:
    """The Messages API answering ``text`` to every request; the requests' bodies go to ``seen``."""

    class Handler(JsonHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.read_json()
            seen.append(body)
            self.send_json(
                {
                    "id": f"msg_{len(seen)}",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model", "claude"),
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 321, "output_tokens": 45},
                }
            )

    return Handler


@pytest.fixture
def narrate_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("DATA_DIR", str(BUNDLED_DAILY))
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("LLM_SELECTION", "off")
    yield


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("The pipeline checked every symbol, recorded each agent's decision and kept the book unchanged.", "llm"),
        ("Equity jumped to 987,654,321.55 after a stellar day.", "template"),
    ],
)
def test_narrative_is_kept_only_when_every_number_is_in_the_facts(
    narrate_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, kind: str
) -> None:
    seen: list[dict] = []
    url = f"sqlite:///{tmp_path / 'n.db'}"
    with serve_locally(_messages_api(text, seen)) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
        assert (
            main.main(["replay", "--llm", "--start", "2021-03-01", "--end", "2021-03-05", "--quiet", "--db", url]) == 0
        )
    assert len(seen) == 5  # one narration per iteration
    with Session(create_engine(url)) as s:
        reports = s.scalars(select(AuditReportRow)).all()
        assert {r.kind for r in reports} == {kind}
        if kind == "llm":
            assert all(r.text == text for r in reports)
        else:
            assert all(r.text != text and r.facts["narrative"]["rejected_text"] == text for r in reports)
            assert all("987,654,321.55" in r.facts["narrative"]["reason"] for r in reports)
        calls = s.scalars(select(LLMCallRow).where(LLMCallRow.purpose == "narrative")).all()
        assert len(calls) == 5 and {c.input_tokens for c in calls} == {321}
        assert all(KEY not in (c.error or "") for c in calls)
