"""The daemon (``main.main(["run", "--once"])``) on Alpaca bars served by a local fake of the market-data API
(the real alpaca-py client, responses validated against Alpaca's official spec), with the simulated broker."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import main
from core.kernel.calendar import MarketCalendar
from core.persistence.models import DecisionRow, Iteration, Run
from tests.fakes.alpaca_server import (
    MARKET_DATA_SPEC_PATH,
    FakeAlpacaServer,
    OpenApiSpec,
    StockBarsEndpoint,
    synthetic_daily_bars,
)

KEY = "PKE2EKEYCANARY77"
SECRET = "e2eSecretCanary-0f1e2d3c4b5a"
SYMBOLS = ["AAA", "BBB", "SPY"]


@pytest.fixture
def fake_market(tmp_path: Path):
    if not MARKET_DATA_SPEC_PATH.is_file():
        pytest.skip(f"needs Alpaca's official spec at {MARKET_DATA_SPEC_PATH} (../shared is absent)")
    spec = OpenApiSpec.load(MARKET_DATA_SPEC_PATH)
    server = FakeAlpacaServer(api_key=KEY, secret_key=SECRET).start()
    endpoint = StockBarsEndpoint.install(server, spec)
    calendar = MarketCalendar()
    last = calendar.previous_completed_session(datetime.now(UTC)).date  # the test may read the wall clock
    sessions = calendar.sessions_between(last.replace(year=last.year - 2), last)
    for symbol in SYMBOLS:
        endpoint.add_bars(symbol, synthetic_daily_bars(symbol, sessions[0], last, sessions=sessions))
    try:
        yield server
    finally:
        server.stop()
    server.assert_clean()


def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: FakeAlpacaServer) -> None:
    for key, value in {
        "DATA_PROVIDER": "alpaca",
        "BROKER": "simulated",
        "ALPACA_API_KEY": KEY,
        "ALPACA_SECRET_KEY": SECRET,
        "ALPACA_DATA_URL": server.base_url,
        "BAR_CACHE_DIR": str(tmp_path / "bars"),
        "SYMBOLS": ",".join(SYMBOLS),
        "LOG_DIR": str(tmp_path / "logs"),
    }.items():
        monkeypatch.setenv(key, value)


def test_daemon_iteration_on_alpaca_bars_then_restart_uses_the_disk_cache(
    fake_market: FakeAlpacaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _env(monkeypatch, tmp_path, fake_market)
    url = f"sqlite:///{tmp_path / 'daemon.db'}"
    assert main.main(["run", "--once", "--create-db", "--db", url]) == 0
    bars_requests = [r for r in fake_market.requests if r.path.endswith("/stocks/bars")]
    assert len(bars_requests) >= 1 and all(
        set(SYMBOLS) <= set((r.param("symbols") or "").split(",")) for r in bars_requests[:1]
    )  # batched
    first = len(bars_requests)
    assert main.main(["run", "--once", "--db", url]) == 0  # a restart: the on-disk cache is current
    assert len([r for r in fake_market.requests if r.path.endswith("/stocks/bars")]) == first

    engine = create_engine(url)
    with Session(engine) as s:
        runs = s.scalars(select(Run)).all()
        assert [r.data_provider for r in runs] == ["alpaca", "alpaca"] and all(r.status == "finished" for r in runs)
        data = s.scalars(select(DecisionRow).where(DecisionRow.agent == "data")).all()
        assert {d.action for d in data} == {"ok"} and {d.inputs["provider"] for d in data} == {"alpaca"}
        assert all(i.data_quality == 1.0 for i in s.scalars(select(Iteration)))
    # the keys never reach the output, the logs or the database
    output = capsys.readouterr()
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    db_text = (tmp_path / "daemon.db").read_bytes().decode("latin-1")
    for secret in (KEY, SECRET):
        assert secret not in output.out + output.err and secret not in logs and secret not in db_text


def test_daemon_without_alpaca_keys_explains_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_PROVIDER", "alpaca")
    monkeypatch.setenv("BROKER", "simulated")
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    assert main.main(["run", "--once", "--db", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert "ALPACA_API_KEY" in capsys.readouterr().err
