"""The shadow ledger stored packed, one ``shadow_matrices`` row per iteration: it gives back exactly what the Strategy
agent recorded, and the report's shadow summary and the backtest's shadow ledgers read the same figures from it as
from the older per-symbol ``shadow_signals`` rows (a replay's ledger compared in both layouts)."""

from __future__ import annotations

import asyncio
import shutil
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import create_engine, delete, func, insert, select
from sqlalchemy.orm import Session

from agents.data_agent import DataAgent
from agents.strategy_agent import StrategyAgent
from config.settings import BUNDLED_DATA_DIR, Settings, Toggle
from core.analytics.reporting import shadow_entries, shadow_stats
from core.backtest.runner import shadow_ledgers
from core.data.files import FileProvider
from core.kernel.calendar import MarketCalendar
from core.kernel.events import IterationStarted
from core.persistence.models import ShadowMatrixRow, ShadowSignalRow
from core.persistence.shadow import pack_shadow, unpack_shadow
from core.runtime.app import build_app, build_provider, replay_sessions, simulated_clock_for
from core.runtime.orchestrator import run_replay
from core.runtime.profile import REPLAY
from strategies.registry import build_registry
from strategies.selector import DeterministicSelector
from tests.conftest import BUNDLED_DAILY

CALENDAR = MarketCalendar()


async def _ledger(day: date) -> list[dict]:
    symbols = ["AAPL", "IBM", "SPY"]
    agent = DataAgent(FileProvider(BUNDLED_DAILY), symbols, min_history=20, calendar=CALENDAR)
    ready = agent.on_iteration(IterationStarted(iteration_id="it-1", as_of=CALENDAR.session(day).close_utc, seq=1))
    registry = build_registry()
    signals = await StrategyAgent(registry, DeterministicSelector(registry)).on_data(ready)
    return [dict(row) for row in signals.shadow]


def test_pack_shadow_when_unpacked_then_every_symbols_ledger_is_given_back_exactly() -> None:
    for day in (date(2020, 6, 1), date(1998, 6, 1)):  # 1998: young histories, some strategies not eligible
        rows = asyncio.run(_ledger(day))
        packed = ShadowMatrixRow(run_id="r", iteration_id="i", as_of=datetime(2020, 6, 1), **pack_shadow(rows))
        got = unpack_shadow(packed)
        assert [(e.symbol, e.selected, e.close, e.signals) for e in got] == [
            (r["symbol"], r["selected"], r["close"], r["signals"]) for r in rows
        ]
        assert [e.symbol for e in unpack_shadow(packed, "IBM")] == ["IBM"]


def _replay(tmp: Path) -> tuple[str, str]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite:///{tmp / 'replay.db'}",
        data_dir=BUNDLED_DATA_DIR,
        log_dir=tmp,
        llm_selection=Toggle.OFF,
    )
    provider = build_provider(settings, CALENDAR)
    sessions = replay_sessions(CALENDAR, date(2019, 1, 2), date(2019, 3, 29))
    clock = simulated_clock_for(sessions)
    app = build_app(settings, profile=REPLAY, clock=clock, provider=provider, calendar=CALENDAR)
    asyncio.run(run_replay(app.orchestrator, clock.advance_to, sessions, stop=asyncio.Event()))
    app.close()
    return settings.database_url, app.run_id


def _as_legacy_rows(url: str) -> None:
    """Rewrite a database's packed ledger as the per-symbol rows the recorder wrote before."""
    engine = create_engine(url)
    with Session(engine) as s, s.begin():
        rows = [
            {
                "run_id": e.run_id,
                "iteration_id": e.iteration_id,
                "as_of": e.as_of,
                "symbol": e.symbol,
                "selected": e.selected,
                "close": e.close,
                "signals": e.signals,
            }
            for e in shadow_entries(s)
        ]
        s.execute(delete(ShadowMatrixRow))
        s.execute(insert(ShadowSignalRow), rows)
    engine.dispose()


def test_shadow_summary_when_read_from_packed_rows_then_the_figures_equal_the_per_symbol_rows(
    tmp_path: Path,
) -> None:
    url, run_id = _replay(tmp_path)
    legacy_url = f"sqlite:///{tmp_path / 'legacy.db'}"
    shutil.copy(tmp_path / "replay.db", tmp_path / "legacy.db")
    _as_legacy_rows(legacy_url)
    figures = {}
    for name, db in (("packed", url), ("legacy", legacy_url)):
        engine = create_engine(db)
        with Session(engine) as s:
            packed_rows = s.scalar(select(func.count()).select_from(ShadowMatrixRow))
            legacy_rows = s.scalar(select(func.count()).select_from(ShadowSignalRow))
            entries = shadow_entries(s, run_id=run_id)
            figures[name] = (
                shadow_stats(s, run_id=run_id),
                shadow_stats(s, run_id=run_id, symbol="ibm", horizon=3),
                shadow_stats(s, start=date(2019, 2, 1), end=date(2019, 2, 28)),
                shadow_ledgers([(e.as_of, e.symbol, e.selected, e.close, e.signals) for e in entries]),
                [(e.iteration_id, e.symbol, e.close) for e in entries],
            )
        engine.dispose()
        if name == "packed":  # one row per iteration, none per symbol
            assert legacy_rows == 0 and packed_rows == 61
        else:
            assert packed_rows == 0 and legacy_rows == 61 * 6
    assert figures["packed"] == figures["legacy"]
    stats = figures["packed"][0]
    assert stats[0]["strategy"] == "selector" and stats[0]["evaluated"] == 61 * 6


def test_pack_shadow_when_symbols_have_different_strategies_then_the_matrices_are_the_element_wise_ones() -> None:
    """The columns are the strategies in first-seen order; a strategy a symbol is not eligible for is NOT_ELIGIBLE
    with strength 0; strengths are stored as float64 whatever number type they arrive as."""
    import numpy as np

    from core.persistence.shadow import NOT_ELIGIBLE

    rows = [
        {"symbol": "A", "selected": "x", "close": 10, "signals": {"x": ["BUY", np.float32(0.25)], "y": ["HOLD", 0]}},
        {"symbol": "B", "selected": "z", "close": 2.5, "signals": {"z": ["SELL", 0.7], "x": ["HOLD", 0.0]}},
        {"symbol": "C", "selected": "y", "close": 1.0, "signals": {}},
    ]
    packed = pack_shadow(rows)
    assert packed["strategies"] == ["x", "y", "z"]
    codes = np.frombuffer(packed["codes"], dtype=np.int8).reshape(3, 3)
    strengths = np.frombuffer(packed["strengths"], dtype="<f8").reshape(3, 3)
    assert codes.tolist() == [[1, 0, NOT_ELIGIBLE], [0, NOT_ELIGIBLE, -1], [NOT_ELIGIBLE] * 3]
    assert strengths.tolist() == [[float(np.float32(0.25)), 0.0, 0.0], [0.0, 0.0, 0.7], [0.0] * 3]
    assert np.frombuffer(packed["closes"], dtype="<f8").tolist() == [10.0, 2.5, 1.0]
    assert pack_shadow([])["codes"] == b""
