"""The daemon (``main.py run``) against a fake Alpaca (market data + trading API, the real alpaca-py clients, replies
validated against the official specs) when the broker misbehaves: transient errors mid-iteration, a 429 asking for an
hour, refused keys, an order status nobody knows, and the paper/live guard."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import main
from core.kernel.calendar import MarketCalendar
from core.persistence.models import Iteration, OrderRow, Run
from tests.conftest import REPO_ROOT
from tests.fakes.alpaca_server import (
    MARKET_DATA_SPEC_PATH,
    FakeAlpacaServer,
    OpenApiSpec,
    RecordedRequest,
    Reply,
    StockBarsEndpoint,
    synthetic_daily_bars,
)
from tests.fakes.alpaca_trading import ACCOUNT_PATH, ORDERS_PATH, TRADING_SPEC_PATH, FakeTradingApi, TradingSpec

KEY = "PKFAULTCANARY21"
SECRET = "faultSecretCanary-31cc42dd"
SYMBOLS = ["AAA", "BBB", "CCC"]
LIVE_ACCOUNT = "312345678"


@dataclass
class Rig:
    server: FakeAlpacaServer
    trading: FakeTradingApi
    bars: StockBarsEndpoint
    market_spec: OpenApiSpec
    trading_spec: TradingSpec

    def on_first_iteration(self, action: Callable[[], None]) -> None:
        """Run ``action`` (script faults) as the first iteration starts talking to the broker: at the third order
        listing. The start-up lists orders twice (catching up with what happened while the daemon was down: the open
        orders, then the recent closed ones); the first iteration's own listings come next, its broker sync first."""
        seen: list[bool] = []
        with self.server._lock:
            route = next(r for r in self.server._routes if (r.method, r.template) == ("GET", ORDERS_PATH))

        def handler(request: RecordedRequest) -> Reply:
            seen.append(True)
            if len(seen) == 3:
                action()
            return route.handler(request)

        self.server.route("GET", ORDERS_PATH, handler, spec=self.trading_spec)


@pytest.fixture
def rig() -> Iterator[Rig]:
    if not (MARKET_DATA_SPEC_PATH.is_file() and TRADING_SPEC_PATH.is_file()):
        pytest.skip("needs Alpaca's official specs in ../shared (absent)")
    server = FakeAlpacaServer(api_key=KEY, secret_key=SECRET).start()
    market_spec, trading_spec = OpenApiSpec.load(MARKET_DATA_SPEC_PATH), TradingSpec.load(TRADING_SPEC_PATH)
    bars = StockBarsEndpoint.install(server, market_spec)
    trading = FakeTradingApi.install(server, trading_spec, clock=lambda: datetime.now(UTC))
    calendar = MarketCalendar()
    last = calendar.previous_completed_session(datetime.now(UTC)).date  # the test may read the wall clock
    sessions = calendar.sessions_between(last.replace(year=last.year - 2), last)
    for symbol in SYMBOLS:
        series = synthetic_daily_bars(symbol, sessions[0], last, sessions=sessions)
        bars.add_bars(symbol, series)
        trading.set_price(symbol, series[-1]["c"])
    try:
        yield Rig(server, trading, bars, market_spec, trading_spec)
    finally:
        server.stop()
    server.assert_clean()


def _environment(rig: Rig, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DATA_PROVIDER": "alpaca",
        "BROKER": "alpaca",
        "ALPACA_API_KEY": KEY,
        "ALPACA_SECRET_KEY": SECRET,
        "ALPACA_DATA_URL": rig.server.base_url,
        "ALPACA_TRADING_URL": rig.server.base_url,
        "SYMBOLS": ",".join(SYMBOLS),
        "SCHEDULE": "interval",
        "LOOP_INTERVAL_SECONDS": "1",
        "BAR_CACHE_DIR": str(tmp_path / "bars"),
        "LOG_DIR": str(tmp_path / "logs"),
        **extra,
    }


def _set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in ("DATABASE_URL", "GROQ_API_KEY", "ANTHROPIC_API_KEY", "TRADING_MODE", "LIVE_ALLOWED"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _iterations(url: str) -> list[Iteration]:
    with Session(create_engine(url)) as s:
        return list(s.scalars(select(Iteration).order_by(Iteration.seq)))


def test_daemon_when_the_order_list_500s_and_the_account_503s_mid_iteration_then_it_is_degraded_and_the_daemon_goes_on(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def faults() -> None:
        rig.trading.fail_next("GET", ORDERS_PATH, status=500, times=3)  # the sync's order list, and its 2 retries
        rig.trading.fail_next("GET", ACCOUNT_PATH, status=503, times=6)  # the Risk agent's read, then the Audit's

    rig.on_first_iteration(faults)
    _set_env(monkeypatch, _environment(rig, tmp_path))
    url = f"sqlite:///{tmp_path / 'faults.db'}"

    assert (
        main.main(["run", "--create-db", "--iterations", "3", "--db", url]) == 0
    )  # not 5: the ledger recorded every iteration

    iterations = _iterations(url)
    assert [i.status for i in iterations] == ["degraded", "ok", "ok"]
    first = iterations[0].error or ""
    assert "broker sync failed" in first and "HTTP 500" in first and "HTTP 503" in first
    assert rig.trading.server.pending_script("GET", ACCOUNT_PATH) == 0
    with Session(create_engine(url)) as s:
        assert [r.status for r in s.scalars(select(Run))] == ["finished"]


@pytest.mark.slow
def test_daemon_when_429_asks_for_an_hour_then_each_iteration_ends_at_its_deadline_and_is_recorded_degraded(
    rig: Rig, tmp_path: Path
) -> None:
    rig.on_first_iteration(lambda: rig.trading.rate_limit_next("GET", ACCOUNT_PATH, retry_after=3600))
    env = {
        k: v for k, v in os.environ.items() if k.upper() not in {"DATABASE_URL", "GROQ_API_KEY", "ANTHROPIC_API_KEY"}
    }
    env.update(
        _environment(rig, tmp_path, ITERATION_DEADLINE_SECONDS="3", DATABASE_URL=f"sqlite:///{tmp_path / 'rl.db'}")
    )

    # Without the deadline the SDK's retries wait out the (capped) Retry-After three times: minutes, not seconds.
    done = subprocess.run(
        [sys.executable, "main.py", "run", "--create-db", "--iterations", "2"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    iterations = _iterations(f"sqlite:///{tmp_path / 'rl.db'}")
    assert [i.status for i in iterations] == ["degraded", "degraded"]  # Alpaca's pause outlasts both deadlines
    assert all("iteration deadline" in (i.error or "") for i in iterations)
    assert len(rig.server.requests_to("GET", ACCOUNT_PATH)) == 3  # two start-up reads, then the one 429: no retry sent


def test_daemon_when_an_open_order_has_a_status_the_sdk_does_not_know_then_it_starts_and_records_it(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.trading.create_order(
        symbol="AAA", qty=1, client_order_id="manual-odd-1", type="limit", limit_price="1.50", time_in_force="gtc"
    )
    rig.trading.set_status("manual-odd-1", "awaiting_risk_review")
    _set_env(monkeypatch, _environment(rig, tmp_path))
    url = f"sqlite:///{tmp_path / 'odd.db'}"

    assert main.main(["run", "--create-db", "--once", "--db", url]) == 0

    with Session(create_engine(url)) as s:
        order = s.scalar(select(OrderRow).where(OrderRow.client_order_id == "manual-odd-1"))
    assert order is not None and order.status == "submitted"
    assert "alpaca status 'awaiting_risk_review' (unknown: treated as working)" in (order.reason or "")


def test_daemon_when_alpaca_refuses_the_keys_at_start_then_one_line_and_exit_2(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _set_env(monkeypatch, _environment(rig, tmp_path, ALPACA_SECRET_KEY="not-the-right-secret"))

    code = main.main(["run", "--create-db", "--once", "--db", f"sqlite:///{tmp_path / 'keys.db'}"])

    output = capsys.readouterr()
    assert code == 2
    errors = [line for line in output.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: Alpaca rejected the API keys (HTTP 401)")
    assert "Traceback" not in output.out + output.err
    assert "not-the-right-secret" not in output.out + output.err


def test_daemon_when_alpaca_answers_5xx_at_start_after_the_retries_then_one_line_and_exit_1(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rig.trading.fail_next("GET", ACCOUNT_PATH, status=500, times=3)
    _set_env(monkeypatch, _environment(rig, tmp_path))

    code = main.main(["run", "--create-db", "--once", "--db", f"sqlite:///{tmp_path / 'down.db'}"])

    output = capsys.readouterr()
    assert code == 1
    errors = [line for line in output.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unavailable at start-up" in errors[0] and "HTTP 500" in errors[0]
    assert "Traceback" not in output.out + output.err
    assert len(rig.server.requests_to("GET", ACCOUNT_PATH)) == 3 and not rig.server.requests_to("POST", ORDERS_PATH)


def test_daemon_when_paper_mode_names_the_live_endpoint_then_refused_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _set_env(
        monkeypatch,
        {
            "BROKER": "alpaca",
            "DATA_PROVIDER": "files",
            "ALPACA_API_KEY": KEY,
            "ALPACA_SECRET_KEY": SECRET,
            "ALPACA_TRADING_URL": "https://api.alpaca.markets",
            "TRADING_MODE": "paper",
            "LOG_DIR": str(tmp_path / "logs"),
        },
    )

    code = main.main(["run", "--create-db", "--once", "--db", f"sqlite:///{tmp_path / 'guard.db'}"])

    err = capsys.readouterr().err
    assert code == 2
    assert "ALPACA_TRADING_URL points at Alpaca's LIVE endpoint" in err and "TRADING_MODE=paper" in err


def test_daemon_when_paper_mode_reaches_a_live_account_through_a_proxy_then_refused_without_its_digits(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeTradingApi.install(rig.server, rig.trading_spec, clock=lambda: datetime.now(UTC), account_number=LIVE_ACCOUNT)
    _set_env(monkeypatch, _environment(rig, tmp_path))

    code = main.main(["run", "--create-db", "--once", "--db", f"sqlite:///{tmp_path / 'proxy.db'}"])

    output = capsys.readouterr()
    assert code == 2
    assert "TRADING_MODE=paper but the Alpaca account behind ALPACA_TRADING_URL is a LIVE account" in output.err
    assert LIVE_ACCOUNT[-4:] not in output.out + output.err
    assert not rig.server.requests_to("POST", ORDERS_PATH)


def test_confirm_live_when_only_the_last_digits_are_given_then_refused_and_no_digit_shown_but_the_whole_number_starts(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeTradingApi.install(rig.server, rig.trading_spec, clock=lambda: datetime.now(UTC), account_number=LIVE_ACCOUNT)
    _set_env(monkeypatch, _environment(rig, tmp_path, TRADING_MODE="live", LIVE_ALLOWED="true"))
    url = f"sqlite:///{tmp_path / 'live.db'}"

    refused = {
        suffix: main.main(["run", "--create-db", "--once", "--confirm-live", suffix, "--db", url])
        for suffix in ("5678", "x5678", "12345678")
    }
    output = capsys.readouterr()

    assert refused == {"5678": 2, "x5678": 2, "12345678": 2}
    errors = [line for line in output.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and not any(re.search(r"\d", line) for line in errors)
    assert "5678" not in output.out + output.err
    assert not rig.server.requests_to("POST", ORDERS_PATH)

    assert main.main(["run", "--create-db", "--once", "--confirm-live", LIVE_ACCOUNT, "--db", url]) == 0
    assert "mode LIVE" in capsys.readouterr().out
