"""Notifications end to end: real replays and daemon runs deliver through apprise's JSON webhook to a local HTTP
receiver; what arrives, what the ``notifications`` table records, and what never leaks (the URL's token)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from loguru import logger
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import main
from config.settings import Settings, SettingsError, load_settings
from core.analytics.notifications import Kind, Message
from core.brokers.base import AccountState
from core.kernel.calendar import MarketCalendar
from core.kernel.domain import EquitySnapshot, Order, OrderStatus, OrderType, Side
from core.notify import Notifier, session_end_rule
from core.persistence.db import open_database
from core.persistence.models import Iteration, NotificationRow
from core.persistence.reconcile import Reconciler
from core.persistence.repository import IterationRecord, Repository
from core.runtime.app import build_app, replay_sessions, simulated_clock_for
from core.runtime.orchestrator import run_replay
from core.runtime.profile import REPLAY
from tests.conftest import BUNDLED_DAILY, make_settings
from tests.notify.receiver import Receiver, receiver

TOKEN = "Tok3nCanary55"  # the secret part of the webhook URL: it must reach no log, table or message
SYMBOLS = ["AAPL", "AIG", "BAC", "IBM", "IWM", "SPY"]


@dataclass
class Replayed:
    posts: list[dict[str, Any]]
    paths: list[str]
    url: str
    counts: dict[str, int]
    logs: list[str]
    sessions: int


def _replay(
    tmp: Path, rx: Receiver, start: date, end: date, *, symbols: list[str] = SYMBOLS, **overrides: object
) -> Replayed:
    settings = make_settings(tmp, broker="simulated", symbols=symbols, notify_urls=rx.url(f"hook/{TOKEN}"), **overrides)
    calendar = MarketCalendar()
    sessions = replay_sessions(calendar, start, end)
    clock = simulated_clock_for(sessions)
    logs: list[str] = []
    sink = logger.add(logs.append, level="DEBUG", format="{level} {message}")
    try:
        app = build_app(settings, profile=replace(REPLAY, notify=True), clock=clock, calendar=calendar, allow_llm=False)
        try:
            asyncio.run(run_replay(app.orchestrator, clock.advance_to, sessions, stop=asyncio.Event()))
            # the replay is over while a hanging receiver still holds its first request: no iteration waited on it
            finished_while_hanging = rx.mode != "hang" or not rx.release.is_set()
            assert finished_while_hanging
            assert app.notifier is not None and app.notifier.drain(timeout_s=120)  # each delivery ends by its timeout
        finally:
            app.close()
    finally:
        logger.remove(sink)
    assert app.notifier is not None
    return Replayed(
        list(rx.posts), list(rx.paths), settings.database_url, dict(app.notifier.counts), logs, len(sessions)
    )


def _rows(url: str) -> list[NotificationRow]:
    with Session(create_engine(url)) as s:
        return list(s.scalars(select(NotificationRow).order_by(NotificationRow.id)))


def _message_with(posts: list[dict[str, Any]], text: str) -> str:
    found = [p["message"] for p in posts if text in p["message"]]
    assert found, f"no message contains {text!r}"
    return found[0]


@pytest.fixture(scope="module")
def replay_2020(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    """January to April 2020 on the bundled bars: entries, a stop-loss fill, signal exits, a drawdown lock."""
    tmp = tmp_path_factory.mktemp("replay2020")
    with receiver() as rx:
        # the overnight-gap guard off: these expectations pin the trades of this window without it (the guard refuses
        # the 2020-03-13 AAPL entry; it has its own tests in tests/backtest/test_gap_guard.py)
        yield _replay(tmp, rx, date(2020, 1, 1), date(2020, 4, 30), gap_guard=False)


def test_replay_when_it_trades_then_each_iteration_sends_one_message_bundling_its_events(replay_2020: Replayed) -> None:
    posts = replay_2020.posts
    assert len(posts) == replay_2020.sessions == 83  # one message per iteration (each carries its session summary)
    assert all(p["title"].startswith("[paper replay-") and "iteration 2020-" in p["title"] for p in posts)
    entry = _message_with(posts, "ENTRY AAPL: BUY 249")
    assert "(bracket, submitted) - strategy breakout; BUY 249 AAPL @ ~80.2708" in entry
    assert "stop 77.2918" in entry
    filled = _message_with(posts, "ENTRY FILLED AAPL")
    assert "ENTRY FILLED AAPL: BUY 249 @ 79.4022 (value 19,771.15, commission 1.24) - strategy breakout" in filled
    stop = _message_with(posts, "STOP-LOSS FILLED AAPL: SELL 249")
    assert "@ 77.2532" in stop and "strategy breakout" in stop
    exit_ = _message_with(posts, "EXIT AAPL: SELL 183")
    assert "(market, submitted) - strategy volatility_breakout" in exit_ and "exit on volatility_breakout SELL" in exit_
    assert "EXIT FILLED AAPL: SELL 183 @" in _message_with(posts, "EXIT FILLED AAPL")
    lock = _message_with(posts, "TRADING LOCKED")
    assert "TRADING LOCKED (active -> locked): drawdown 10.04% from the lock reference 100,186.08" in lock
    assert "TRADING RELEASE (locked -> reducing)" in _message_with(posts, "TRADING RELEASE")


def test_replay_summary_shows_equity_day_pnl_positions_with_unrealised_pnl_and_working_orders(
    replay_2020: Replayed,
) -> None:
    last = replay_2020.posts[-1]
    assert "1 summary" in last["title"] and "2020-04-30 16:00 EDT" in last["title"]
    assert last["message"].splitlines() == [
        "TRADING RELEASE (locked -> reducing): lock released after 20 sessions: equity 92,489.75, high-water mark "
        "100,186.08; the lock reference is reset to the equity at release; reducing (entries at 0.5 x size) for 10 "
        "sessions",
        "SUMMARY 2020-04-30: equity 92,489.75, day P&L -123.50 (-0.13%), cash 78,598.53",
        "  AAPL 129 @ 62.2488, last 72.885, unrealised +1,372.07, stop 65.26, target 78.9455",
        "  AIG 183 @ 22.3905, last 24.5304, unrealised +391.60, stop 20.36, target 34.2554",
        "  orders working: 4: AAPL sell 129 stop, AAPL sell 129 limit, AIG sell 183 stop, AIG sell 183 limit",
    ]


def test_replay_records_every_delivery_and_the_token_reaches_no_log_or_table(replay_2020: Replayed) -> None:
    rows = _rows(replay_2020.url)
    assert [r.status for r in rows] == ["sent"] * 83 and replay_2020.counts == {"sent": 83}
    assert rows[-1].body == replay_2020.posts[-1]["message"] and "summary" in rows[-1].kinds
    assert replay_2020.paths[0] == f"/hook/{TOKEN}"  # the receiver did get the token: it was in use
    database = Path(replay_2020.url.removeprefix("sqlite:///")).read_bytes()
    assert TOKEN.encode() not in database
    assert not [line for line in replay_2020.logs if TOKEN in line]
    assert not [p for p in replay_2020.posts if TOKEN in p["message"] or TOKEN in p["title"]]


def _truncated_data(tmp: Path, cut: dict[str, str]) -> Path:
    """The bundled bars, with the symbols of ``cut`` ending at the given date."""
    data = tmp / "data"
    data.mkdir()
    for source in BUNDLED_DAILY.glob("*.csv"):
        lines = source.read_text().splitlines()
        end = cut.get(source.stem)
        kept = [lines[0]] + [line for line in lines[1:] if end is None or line[:10] <= end]
        (data / source.name).write_text("\n".join(kept) + "\n")
    return data


def test_replay_when_symbols_lose_their_data_then_the_exclusions_and_no_usable_data_are_notified(
    tmp_path: Path,
) -> None:
    data = _truncated_data(tmp_path, {"IBM": "2020-01-03", "BAC": "2020-01-03"})
    with receiver() as rx:
        replayed = _replay(
            tmp_path, rx, date(2020, 1, 2), date(2020, 1, 15), symbols=["AAPL", "BAC", "IBM"], data_dir=data
        )
    excluded = _message_with(replayed.posts, "DATA IBM")
    assert "1 data" in replayed.posts[-1]["title"] or "data" in replayed.posts[-1]["title"]
    assert "DATA BAC" in excluded
    with receiver() as rx:
        (tmp_path / "none").mkdir()
        gone = _replay(
            tmp_path / "none",
            rx,
            date(2020, 1, 2),
            date(2020, 1, 3),
            symbols=["BAC", "IBM"],
            data_dir=_truncated_data(tmp_path / "none", {"IBM": "2019-06-28", "BAC": "2019-06-28"}),
        )
    assert "NO USABLE DATA: 0 of 2 symbols clean; no new entries" in _message_with(gone.posts, "NO USABLE DATA")


@pytest.mark.parametrize("mode", ["hang", "error"])
def test_replay_when_the_receiver_hangs_or_fails_then_iterations_go_on_and_failures_are_recorded_and_logged_once(
    tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the HTTP client's debug lines name the request path (the token): scrubbed
    with receiver(mode) as rx:
        replayed = _replay(tmp_path, rx, date(2020, 1, 2), date(2020, 1, 8), notify_timeout_seconds=0.5)
    with Session(create_engine(replayed.url)) as s:
        assert [i.status for i in s.scalars(select(Iteration))] == ["ok"] * replayed.sessions
    rows = _rows(replayed.url)
    assert len(rows) == replayed.sessions == 5 and {r.status for r in rows} == {"failed"}
    assert replayed.counts == {"failed": 5}
    expected = "timed out after 0.5s" if mode == "hang" else "error=500"
    assert all(r.error is not None and expected in r.error for r in rows), [r.error for r in rows]
    warnings = [line for line in replayed.logs if line.startswith("WARNING notification failed")]
    assert len(warnings) == 1 and expected in warnings[0]
    database = Path(replayed.url.removeprefix("sqlite:///")).read_bytes()
    assert TOKEN.encode() not in database and not [line for line in replayed.logs if TOKEN in line]
    assert rx.paths and all(p == f"/hook/{TOKEN}" for p in rx.paths)
    assert "POST /hook/*** " in caplog.text or mode == "hang"  # the client logged the request, token scrubbed
    assert TOKEN not in caplog.text


# ---------------------------------------------------------------------------------------------- the daemon, main.py


def _daemon_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rx: Receiver, **extra: str) -> str:
    monkeypatch.setenv("DATA_PROVIDER", "synthetic")
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("NOTIFY_URLS", rx.url(f"hook/{TOKEN}"))
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    return f"sqlite:///{tmp_path / 'daemon.db'}"


def test_daemon_sends_start_iteration_and_stop_and_unhealthy_health_and_reset_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with receiver() as rx:
        url = _daemon_env(monkeypatch, tmp_path, rx)
        assert main.main(["run", "--offline", "--once", "--create-db", "--db", url]) == 0
        titles = rx.titles()
        assert len(titles) == 3
        assert titles[0].startswith("[paper daemon-") and " daemon started " in titles[0]
        assert rx.bodies[0].startswith("Daemon started: mode PAPER, simulated account, data synthetic, run daemon-")
        assert "next iteration" in rx.bodies[0]
        assert "iteration" in titles[1] and "summary" in titles[1] and "SUMMARY " in rx.bodies[1]
        assert " daemon stopped " in titles[2] and rx.bodies[2].endswith("ended finished")

        repo = Repository(open_database(url))
        saved, _ = repo.get_state("risk:state")  # type: ignore[misc]
        repo.put_state("risk:state", {**saved, "state": "halted", "reason": "test halt"}, datetime.now(UTC))
        assert main.main(["health", "--db", url]) == 1
        assert "health check UNHEALTHY" in rx.titles()[-1] and "halted" in rx.bodies[-1]
        assert main.main(["reset", "--reason", "operator checked the account", "--db", url]) == 0
        assert "trading state reset" in rx.titles()[-1]
        assert rx.bodies[-1].startswith("TRADING RESET (halted -> active): operator checked the account")
    kinds = [(r.kinds, r.status) for r in _rows(url)]
    assert kinds == [("start", "sent"), ("summary", "sent"), ("stop", "sent"), ("protection", "sent")]
    assert TOKEN.encode() not in (tmp_path / "daemon.db").read_bytes()
    log_text = "".join(p.read_text() for p in (tmp_path / "logs").glob("*"))
    assert log_text and TOKEN not in log_text and TOKEN not in capsys.readouterr().err


def test_daemon_crash_is_notified_at_once_with_secrets_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "PKcanaryKey0987"

    async def crashing_loop(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"the loop broke holding {secret}")

    with receiver() as rx:
        url = _daemon_env(monkeypatch, tmp_path, rx, ALPACA_API_KEY=secret, ALPACA_SECRET_KEY="canarySecret-11")
        monkeypatch.setattr(main, "run_live", crashing_loop)
        with pytest.raises(RuntimeError):
            main.main(["run", "--offline", "--once", "--create-db", "--db", url])
        assert "daemon CRASHED" in rx.titles()[-1]
        assert rx.bodies[-1].endswith("ended failed: RuntimeError: the loop broke holding ***")
        assert rx.posts[-1]["type"] == "failure"
    assert [r.kinds for r in _rows(url)] == ["start", "crash"]
    assert secret.encode() not in (tmp_path / "daemon.db").read_bytes()


def test_notify_kinds_switch_kinds_off(tmp_path: Path) -> None:
    with receiver() as rx:
        replayed = _replay(tmp_path, rx, date(2020, 1, 28), date(2020, 2, 3), notify_kinds="all,-summary")
    assert replayed.posts and not [p for p in replayed.posts if "SUMMARY" in p["message"]]
    assert {"ENTRY AAPL", "STOP-LOSS FILLED AAPL"} <= {
        w for p in replayed.posts for w in ("ENTRY AAPL", "STOP-LOSS FILLED AAPL") if w in p["message"]
    }


# ---------------------------------------------------------------------------------------------- units, real parts


def _record(run_id: str, at: datetime, **fields: Any) -> IterationRecord:
    values: dict[str, Any] = {
        "run_id": run_id,
        "iteration_id": f"{run_id}-1",
        "seq": 1,
        "as_of": at,
        "recorded_at": at,
        "status": "ok",
        "error": None,
        "symbols_total": 1,
        "symbols_ok": 1,
        "data_quality": 1.0,
        "positions": {},
        "equity": EquitySnapshot(at, Decimal("1000"), Decimal("0"), Decimal("1000"), 0),
    }
    values.update(fields)
    return IterationRecord(**values)


def _collect(sent: list[Message]) -> Callable[[Message], str | None]:
    """A sender that keeps every message (delivered: None)."""

    def send(message: Message) -> str | None:
        sent.append(message)
        return None

    return send


def test_reconciliation_discrepancy_is_notified_with_the_next_iteration(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    repository = Repository(open_database(url))
    at = datetime(2024, 3, 1, 21, tzinfo=UTC)
    repository.create_run(
        "daemon-1", kind="daemon", broker="simulated", data_provider="files", started_at=at,
        initial_cash=Decimal(1000), symbols=["AAPL"], config={},
    )  # fmt: skip
    sent: list[Message] = []
    notifier = Notifier(
        _collect(sent), kinds=set(Kind), timeout_s=5, clock=lambda: at, repository=repository,
        run_id="daemon-1",
    )  # fmt: skip
    reconciler = Reconciler(repository, "simulated", "daemon-1", on_found=notifier.discrepancies)
    manual = Order("by-hand-1", "AAPL", Side.BUY, 5, OrderType.LIMIT, OrderStatus.SUBMITTED, at, limit_price=150.0)
    account = AccountState(at=at, cash=Decimal(1000), positions={}, equity=Decimal(1000), open_orders=[manual])
    reconciler.every_iteration(account, at)
    notifier.observe(_record("daemon-1", at))
    notifier.close()
    assert len(sent) == 1
    assert (
        "RECONCILIATION unknown_order AAPL: client_order_id by-hand-1, side buy, quantity 5, status submitted - "
        "flagged: a working order the daemon did not place; left untouched"
    ) in sent[0].body
    assert [(r.status, r.kinds) for r in _rows(url)] == [("sent", "reconciliation,summary")]


def test_message_bodies_have_configured_secrets_redacted_and_a_sender_error_is_a_recorded_failure(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    repository = Repository(open_database(url))
    at = datetime(2024, 3, 1, 21, tzinfo=UTC)
    sent: list[Message] = []
    notifier = Notifier(_collect(sent), kinds=set(Kind), timeout_s=5, clock=lambda: at, secrets=[TOKEN])
    assert notifier.lifecycle(Kind.CRASH, at, f"failed near {TOKEN}")
    notifier.close()
    assert [m.body for m in sent] == ["failed near ***"] and sent[0].failure

    def broken(message: Message) -> str | None:
        raise ConnectionError(f"refused by {TOKEN}")

    failing = Notifier(broken, kinds={Kind.STOP}, timeout_s=5, clock=lambda: at, secrets=[TOKEN], repository=repository)
    assert failing.lifecycle(Kind.STOP, at, "bye")
    assert not failing.lifecycle(Kind.START, at, "switched off by NOTIFY_KINDS")
    failing.close()
    assert failing.counts == {"failed": 1}
    assert [(r.status, r.error) for r in _rows(url)] == [("failed", "ConnectionError: refused by ***")]


def test_notify_urls_are_validated_at_start_up_without_echoing_them(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(notify_urls=f"json://127.0.0.1/{TOKEN} nosuchservice://{TOKEN}@x", _env_file=None)
    message = str(caught.value)
    assert "NOTIFY_URLS: entry 2 of 2 (nosuchservice://...) is not a valid apprise URL" in message
    assert TOKEN not in message and "\n" not in message
    with pytest.raises(SettingsError, match="NOTIFY_KINDS: unknown kind 'entries'"):
        load_settings(notify_kinds="entries", _env_file=None)
    settings = make_settings(tmp_path, notify_urls=f"json://127.0.0.1:9/hook/{TOKEN}, tgram://123456789:AAbbCCddEE/42")
    assert settings.notify_url_list == [f"json://127.0.0.1:9/hook/{TOKEN}", "tgram://123456789:AAbbCCddEE/42"]
    assert {TOKEN, "123456789:AAbbCCddEE"} <= set(settings.secret_values)
    assert TOKEN not in repr(settings) and isinstance(Settings.model_fields["notify_urls"].annotation, object)


def test_session_summary_goes_with_the_last_iteration_of_a_session_on_the_interval_schedule(tmp_path: Path) -> None:
    calendar = MarketCalendar()
    hourly = session_end_rule(
        make_settings(tmp_path, schedule="interval", loop_interval_seconds=3600), calendar, one_per_session=False
    )
    new_york = ZoneInfo("America/New_York")
    assert not hourly(datetime(2024, 3, 1, 14, 0, tzinfo=new_york))  # the next iteration, 15:00, is in the session
    assert hourly(datetime(2024, 3, 1, 15, 30, tzinfo=new_york))  # the next one, 16:30, is after the close
    daily = session_end_rule(make_settings(tmp_path), calendar, one_per_session=False)
    assert daily(datetime(2024, 3, 1, 9, 45, tzinfo=new_york))  # SCHEDULE=session: one iteration per session


def test_close_records_every_message_once_even_those_still_waiting_or_being_sent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    repository = Repository(open_database(url))
    at = datetime(2024, 3, 1, 21, tzinfo=UTC)
    stuck = threading.Event()

    def hanging(message: Message) -> str | None:
        stuck.wait(30)
        return None

    notifier = Notifier(hanging, kinds=set(Kind), timeout_s=30, clock=lambda: at, repository=repository)
    for n in range(3):
        notifier.lifecycle(Kind.STOP, at, f"message {n}")
    notifier.close(timeout_s=0)  # waits for nothing: what is queued or in flight is recorded dropped
    stuck.set()
    assert notifier.counts == {"dropped": 3}
    assert [r.status for r in _rows(url)] == ["dropped"] * 3
