"""The monitoring dashboard (Streamlit script). Start it with ``python main.py dashboard [--db URL]``.

Read-only: the database is opened through :func:`core.dashboard.readonly.open_readonly` (SQLite ``mode=ro``,
PostgreSQL read-only transactions), nothing is migrated or created, and every panel is a query of
:mod:`core.dashboard.queries`. The panels rerun by themselves every ``refresh`` seconds (``st.fragment``).

Script arguments (after ``--`` on the ``streamlit run`` command line): ``--db URL`` (default: ``DATABASE_URL`` from
the environment / ``.env``) and ``--refresh SECONDS``. URL query parameter ``?run=RUN_ID`` opens that run (a
daemon session, a replay or a backtest); without it, the latest daemon run, else the latest run.

Above the panels, a banner states the trading state of the run shown, with its reason: green only when ACTIVE, red
when HALTED or LOCKED, amber otherwise. Times are New York times with the zone; the tables carry the UTC time in
their ``UTC`` column and the charts in their tooltips. Tables are sized to show every column at 1400 px.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # streamlit puts only this file's directory on the path
    sys.path.insert(0, str(ROOT))

import altair as alt  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402
from sqlalchemy import Engine  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from config.settings import Settings, SettingsError, load_settings  # noqa: E402
from core.dashboard import formatting as fmt  # noqa: E402
from core.dashboard import queries as q  # noqa: E402
from core.dashboard.readonly import DatabaseUnavailable, open_readonly  # noqa: E402
from core.persistence.db import _first_line, safe_url  # noqa: E402

if TYPE_CHECKING:
    from streamlit.elements.lib.column_types import ColumnConfig

REFRESH_CHOICES = (0, 5, 10, 30, 60, 300)  # seconds; 0 = off
DEFAULT_REFRESH = 30


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="core/dashboard/app.py")
    parser.add_argument("--db", help="database URL (default: DATABASE_URL)")
    parser.add_argument("--refresh", type=int, default=DEFAULT_REFRESH, help="seconds between refreshes (0: off)")
    return parser.parse_known_args(argv)[0]  # tolerant: under a test runner argv holds the runner's arguments


def _settings(db: str | None) -> Settings:
    return load_settings(**({"database_url": db} if db else {}))


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    return open_readonly(url)


# --------------------------------------------------------------------------------------------------- panels

NY_HELP = "New York time (America/New_York); the UTC time is in the UTC column"
UTC_HELP = "The same instant in UTC"
TRIP_TIME_HELP = "New York time of the fill; UTC is 4 h later (EDT) or 5 h later (EST): see the fills' UTC column"


_NUMERIC = frozenset({
    "quantity", "average_price", "last_price", "market_value", "stop_price", "target_price", "unrealized_pnl",
    "unrealized_pct", "entry_price", "exit_price", "pnl", "return_pct", "price", "value", "commission", "confidence",
})  # fmt: skip


def _cols(spec: dict[str, tuple[str, int] | tuple[str, int, str]]) -> dict[str, ColumnConfig]:
    """``column -> (label, width in px[, help])`` as Streamlit text-column configs (every value is preformatted
    text; numbers are right-aligned). The widths are chosen so that each table fits the 940 px main area of a
    1400 px window beside the sidebar."""
    return {
        name: st.column_config.TextColumn(
            entry[0],
            width=entry[1],
            help=entry[2] if len(entry) > 2 else None,
            alignment="right" if name in _NUMERIC else None,
        )
        for name, entry in spec.items()
    }


def _state_banner(session: Session, run_id: str) -> None:
    banner = q.state_banner(session, run_id)
    {"success": st.success, "error": st.error}.get(banner.level, st.warning)(f"This run: {banner.text}")


def _run_header(session: Session, run_id: str) -> None:
    summary = q.run_summary(session, run_id)
    run = q.list_runs(session, run_id).iloc[0]
    st.title(f"{str(summary['kind']).capitalize()} run {run_id}")
    st.caption(
        f"Status {summary['status']} · started {fmt.when(summary['started_at'])}"
        + (f" · finished {fmt.when(summary['finished_at'])}" if summary["finished_at"] else "")
        + f" · broker {summary['broker']} · data {summary['data_provider']} · symbols {', '.join(summary['symbols'])}"
        + f" · sessions {run['first_session'] or fmt.DASH} .. {run['last_session'] or fmt.DASH}"
        + f" ({run['iterations']} iterations, {run['degraded']} degraded, {run['failed']} failed)"
    )


def _health_panel(session: Session, settings: Settings) -> None:
    """The daemon's health (database-wide, whatever run is shown): a red box when unhealthy, a line when healthy."""
    report = q.daemon_health(session, settings, datetime.now(UTC))
    beat = report.get("heartbeat")
    if not report["healthy"]:
        st.error("Daemon UNHEALTHY: " + "; ".join(report["problems"]))
    if beat:
        st.caption(
            (
                "Daemon healthy (its trading state " + str(report["trading_state"]).upper() + "). "
                if report["healthy"]
                else ""
            )
            + f"Last heartbeat: {fmt.when(beat.get('at'))} (run {beat.get('run_id')}, session {fmt.when(beat.get('as_of'))}, "
            f"iteration {beat.get('iteration_id')}, status {beat.get('status')}); next run due {fmt.when(report.get('next_due'))}, "
            f"stale after {fmt.when(report.get('stale_after'))}."
            + (f" Warning: {report['warning']}." if report.get("warning") else "")
        )
    else:
        st.caption("Last heartbeat: never (only the daemon writes one; replays and backtests do not).")


def _equity_panel(session: Session, run_id: str, benchmark: str | None) -> None:
    st.subheader("Equity")
    curve = q.equity_curve(session, run_id, benchmark)
    if curve.final_equity is None:
        st.info("No equity snapshot yet for this run.")
        return
    m = curve.metrics
    cols = st.columns(4)
    cols[0].metric("Final equity", fmt.money(curve.final_equity), fmt.pct(curve.total_return, signed=True))
    cols[1].metric("Initial cash", fmt.money(curve.initial_cash))
    cols[2].metric("Total return", fmt.pct(curve.total_return, signed=True))
    cols[3].metric("Max drawdown", fmt.pct(curve.max_drawdown))
    cols = st.columns(4)
    label = f"Benchmark {curve.benchmark_symbol} buy & hold" if curve.benchmark_symbol else "Benchmark"
    cols[0].metric(label, fmt.pct(curve.benchmark_return, signed=True))
    cols[1].metric("Sharpe", fmt.number(m.get("sharpe")))
    cols[2].metric("CAGR", fmt.pct(m.get("cagr")))
    cols[3].metric("Closed trades", m.get("num_trades", 0))
    st.caption(
        f"Equity at {fmt.when(curve.final_at)}; {len(curve.frame)} snapshots. "
        f"Volatility {fmt.pct(m.get('volatility'))}, Sortino {fmt.number(m.get('sortino'))}, win rate {fmt.pct(m.get('win_rate'))}, "
        f"profit factor {fmt.number(m.get('profit_factor'))}. "
        + (
            f"The benchmark is {curve.benchmark_symbol}'s recorded close, rebased to the first equity."
            if curve.benchmark_symbol
            else "No close recorded for the benchmark symbol in this run."
        )
    )
    frame = curve.frame
    # New York wall-clock times (naive: the charts show them as given); the UTC time goes in the tooltips
    at = pd.DatetimeIndex(frame["at"]).tz_convert(fmt.EASTERN).tz_localize(None)
    when = [fmt.when(v) for v in frame["at"]]
    utc = [fmt.when_utc(v) for v in frame["at"]]
    series = {"Equity": q.as_float(frame["equity"]).to_numpy()}
    if curve.benchmark_symbol:
        series[f"{curve.benchmark_symbol} buy & hold"] = frame["benchmark"].to_numpy()
    lines = (
        pd.DataFrame({"at": at, "when": when, "utc": utc, **series})
        .melt(["at", "when", "utc"], var_name="series", value_name="value")
        .dropna()
    )
    time_tips = [alt.Tooltip("when:N", title="session (New York)"), alt.Tooltip("utc:N", title="UTC")]
    equity_chart = (
        alt.Chart(lines, title="Equity and benchmark")
        .mark_line()
        .encode(
            x=alt.X("at:T", title="New York time"),
            y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False), axis=alt.Axis(format=",.0f")),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
            tooltip=[*time_tips, "series:N", alt.Tooltip("value:Q", format=",.2f")],
        )
        .properties(height=300)
    )
    drawdown = pd.DataFrame({"at": at, "when": when, "utc": utc, "drawdown": -frame["drawdown"].to_numpy()})
    drawdown_chart = (
        alt.Chart(drawdown, title="Drawdown")
        .mark_area(color="#dc2626", opacity=0.6, line={"color": "#dc2626"})
        .encode(
            x=alt.X("at:T", title="New York time"),
            y=alt.Y("drawdown:Q", title=None, axis=alt.Axis(format=".1%")),
            tooltip=[*time_tips, alt.Tooltip("drawdown:Q", format=".2%")],
        )
        .properties(height=300)
    )
    left, right = st.columns([3, 2])
    left.altair_chart(equity_chart)
    right.altair_chart(drawdown_chart)


def _positions_panel(session: Session, run_id: str) -> None:
    st.subheader("Open positions")
    pos = q.open_positions(session, run_id)
    cols = st.columns(3)
    cols[0].metric("Open positions", len(pos.frame))
    cols[1].metric("Market value", fmt.money(pos.market_value))
    cols[2].metric("Unrealised P&L", fmt.money(pos.unrealized_pnl))
    if len(pos.frame):
        st.caption(f"Marked at the last price the run saw ({fmt.when(pos.as_of)}).")
        st.dataframe(
            fmt.table(
                pos.frame,
                money_cols=("market_value", "unrealized_pnl"),
                price_cols=("average_price", "last_price", "stop_price", "target_price"),
                qty_cols=("quantity",),
                pct_cols=("unrealized_pct",),
                time_cols=("opened_at",),
                utc_cols=("opened_at",),
                columns=(
                    "symbol",
                    "quantity",
                    "average_price",
                    "last_price",
                    "market_value",
                    "stop_price",
                    "target_price",
                    "unrealized_pnl",
                    "unrealized_pct",
                    "opened_at",
                ),
            ),  # fmt: skip
            hide_index=True,
            column_config=_cols(
                {
                    "symbol": ("symbol", 55),
                    "quantity": ("qty", 50),
                    "average_price": ("avg price", 75),
                    "last_price": ("last price", 75),
                    "market_value": ("value", 90),
                    "stop_price": ("stop", 75),
                    "target_price": ("target", 75),
                    "unrealized_pnl": ("P&L", 80),
                    "unrealized_pct": ("P&L %", 60),
                    "opened_at": ("opened", 140, NY_HELP),
                    "opened_at_utc": ("opened UTC", 140, UTC_HELP),
                }
            ),  # fmt: skip
        )


def _round_trips_panel(session: Session, run_id: str) -> None:
    st.subheader("Closed trades (round trips)")
    trips = q.round_trips(session, run_id)
    if trips.empty:
        st.caption("No round trip closed in this run yet.")
        return
    wins = sum(1 for p in trips["pnl"] if p > 0)
    st.caption(
        f"{len(trips)} closed trades, {wins} winning; total P&L {fmt.money(sum(trips['pnl']))} net of commissions. "
        "A trade runs from the buy that opens a position to the sell that closes it (flat to flat); newest exit first. "
        "Exit: stop (protective stop-loss), target (take-profit), signal (the strategy's SELL), time (time stop)."
    )
    st.dataframe(
        fmt.table(
            trips,
            money_cols=("pnl",),
            price_cols=("entry_price", "exit_price"),
            qty_cols=("quantity",),
            pct_cols=("return_pct",),
            time_cols=("entry_at", "exit_at"),
            columns=(
                "symbol",
                "entry_at",
                "entry_price",
                "exit_at",
                "exit_price",
                "quantity",
                "pnl",
                "return_pct",
                "holding_sessions",
                "exit_reason",
                "strategy",
            ),
        ),  # fmt: skip
        hide_index=True,
        height=min((len(trips) + 1) * 35 + 3, 420),
        column_config={
            **_cols(
                {
                    "symbol": ("symbol", 55),
                    "entry_at": ("entry", 140, TRIP_TIME_HELP),
                    "entry_price": ("entry price", 75),
                    "exit_at": ("exit", 140, TRIP_TIME_HELP),
                    "exit_price": ("exit price", 75),
                    "quantity": ("qty", 50),
                    "pnl": ("P&L $", 80, "Net of both sides' commissions"),
                    "return_pct": ("P&L %", 60, "P&L / entry cost"),
                    "exit_reason": ("exit by", 60, "stop, target, signal or time"),
                    "strategy": ("strategy", 125),
                }
            ),  # fmt: skip
            "holding_sessions": st.column_config.NumberColumn(
                "sessions", width=65, help="Sessions held (entry date to exit date)"
            ),
        },
    )


def _orders_panel(session: Session, run_id: str) -> None:
    st.subheader("Orders and fills")
    counts = q.activity_counts(session, run_id)
    cols = st.columns(3)
    cols[0].metric("Orders", counts["orders"])
    cols[1].metric("Fills", counts["fills"])
    cols[2].metric("Iterations", counts["iterations"])
    st.caption("Orders by status: " + (", ".join(f"{k} {v}" for k, v in counts["orders_by_status"].items()) or "none"))
    orders = q.recent_orders(session, run_id)
    orders["order"] = [  # type and price in one column: "market", "limit 263.8900", "stop 248.3770"
        t if lp is None and sp is None else f"{t} {fmt.price(sp if lp is None else lp)}"
        for t, lp, sp in zip(orders["type"], orders["limit_price"], orders["stop_price"], strict=True)
    ]
    orders["filled"] = [
        fmt.quantity(fq) + (f" @ {fmt.price(avg)}" if avg is not None else "")
        for fq, avg in zip(orders["filled_quantity"], orders["average_fill_price"], strict=True)
    ]
    st.markdown("**Recent orders** (newest first)")
    st.dataframe(
        fmt.table(
            orders,
            qty_cols=("quantity",),
            time_cols=("submitted_at",),
            utc_cols=("submitted_at",),
            columns=("submitted_at", "symbol", "side", "quantity", "order", "status", "filled", "strategy", "reason"),
        ),
        hide_index=True,
        height=300,
        column_config=_cols(
            {
                "submitted_at": ("submitted", 140, NY_HELP),
                "symbol": ("symbol", 55),
                "side": ("side", 40),
                "quantity": ("qty", 50),
                "order": ("order", 110, "Type, and its limit or stop price"),
                "status": ("status", 75),
                "filled": ("filled", 110, "Filled quantity @ average fill price"),
                "strategy": ("strategy", 125),
                "reason": ("reason", 85, "Why the order was sent (click a cell to read it whole)"),
                "submitted_at_utc": ("UTC", 140, UTC_HELP),
            }
        ),  # fmt: skip
    )
    st.markdown("**Recent fills** (newest first)")
    st.dataframe(
        fmt.table(
            q.recent_fills(session, run_id),
            money_cols=("value", "commission"),
            price_cols=("price",),
            qty_cols=("quantity",),
            time_cols=("filled_at",),
            utc_cols=("filled_at",),
            columns=tuple(q.FILL_COLUMNS),
        ),
        hide_index=True,
        height=300,
        column_config=_cols(
            {
                "filled_at": ("filled", 140, NY_HELP),
                "symbol": ("symbol", 55),
                "side": ("side", 40),
                "quantity": ("qty", 50),
                "price": ("price", 80),
                "value": ("value", 90),
                "commission": ("commission", 80),
                "strategy": ("strategy", 125),
                "client_order_id": ("order id", 120),
                "filled_at_utc": ("UTC", 140, UTC_HELP),
            }
        ),  # fmt: skip
    )


def _decisions_panel(session: Session, run_id: str) -> None:
    st.subheader("Decisions and refusals")
    decisions = q.recent_decisions(session, run_id)
    st.markdown("**Recent decisions per agent** (newest first)")
    if decisions:
        for tab, (_agent, frame) in zip(st.tabs(list(decisions)), decisions.items(), strict=False):
            tab.dataframe(
                fmt.table(
                    frame.drop(columns=["agent"]),
                    time_cols=("as_of",),
                    number_cols=("confidence",),
                    utc_cols=("as_of",),
                ),
                hide_index=True,
                height=260,
                column_config=_cols(
                    {
                        "as_of": ("session", 140, NY_HELP),
                        "symbol": ("symbol", 55),
                        "action": ("action", 70),
                        "strategy": ("strategy", 125),
                        "reason": ("reason", 230),
                        "iteration_id": ("iteration", 100),
                        "as_of_utc": ("UTC", 140, UTC_HELP),
                    }
                )  # fmt: skip
                | _cols({"confidence": ("confidence", 75)}),
            )
    else:
        st.info("No decision recorded yet.")
    refusals = q.refusals_by_rule(session, run_id)
    st.markdown(f"**Refusals by rule** ({int(refusals['count'].sum()) if len(refusals) else 0} in this run)")
    if len(refusals):
        st.table(fmt.table(refusals, time_cols=("latest",)).set_index("rule"))
    else:
        st.caption("The Risk agent refused nothing in this run.")


def _state_panel(session: Session, run_id: str) -> None:
    st.subheader("Trading state and circuit breakers")
    ts = q.trading_state(session, run_id)
    cols = st.columns(4)
    cols[0].metric("Trading state", ts.state.upper())
    cols[1].metric("High-water mark", fmt.money(ts.high_water_mark) if ts.high_water_mark is not None else fmt.DASH)
    cols[2].metric(
        "Gross exposure",
        fmt.money(ts.gross_exposure),
        fmt.pct(ts.gross_share) + " of equity" if ts.gross_share is not None else None,
        delta_color="off",
    )
    tripped = ts.breakers[ts.breakers["state"].isin(["open", "half_open"])] if len(ts.breakers) else ts.breakers
    cols[3].metric("Breakers open", len(tripped))
    st.caption(
        f"{ts.reason}"
        + (f" (updated {fmt.when(ts.updated_at)}, {fmt.when_utc(ts.updated_at)})" if ts.updated_at else "")
    )
    st.markdown("**Circuit breakers**")
    if len(ts.breakers):
        st.table(fmt.table(ts.breakers, time_cols=("changed_at", "last_trip_at", "updated_at")).set_index("name"))
    else:
        st.caption("No breaker state recorded.")
    st.markdown("**Breaker events** (newest first)")
    if len(ts.breaker_events):
        st.dataframe(
            fmt.table(ts.breaker_events, time_cols=("at",), utc_cols=("at",)),
            hide_index=True,
            column_config=_cols({"at": ("at", 140, NY_HELP), "at_utc": ("UTC", 140, UTC_HELP)}),
        )
    else:
        st.caption("No breaker tripped or recovered in this run.")
    if len(ts.exposure):
        st.markdown("**Exposure by sector**")
        st.dataframe(fmt.table(ts.exposure, money_cols=("value",), pct_cols=("share",)), hide_index=True)


def _llm_panel(session: Session, run_id: str) -> None:
    st.subheader("LLM usage and the shadow ledger")
    usage = q.llm_usage(session, run_id)
    cols = st.columns(5)
    cols[0].metric("LLM calls", usage.calls)
    cols[1].metric("LLM cost (USD)", f"{usage.cost_usd:,.4f}")
    cols[2].metric("Latency p50 (ms)", fmt.number(usage.latency_p50_ms, 0))
    cols[3].metric("Latency p95 (ms)", fmt.number(usage.latency_p95_ms, 0))
    cols[4].metric("Abstentions", usage.abstentions)
    if usage.calls:
        st.dataframe(usage.by_model, hide_index=True)
    else:
        st.caption(
            "No LLM call in this run (deterministic selection: replays and backtests run without LLM unless --llm)."
        )
    if len(usage.abstention_reasons):
        st.markdown("**Abstentions by reason**")
        st.dataframe(usage.abstention_reasons, hide_index=True)
    shadow = q.shadow_comparison(session, run_id)
    st.markdown("**Selector versus fixed strategies** (shadow ledger; forward return 10 bars after each signal)")
    if len(shadow):
        st.dataframe(
            fmt.table(shadow, pct_cols=("buy_fwd_return_avg", "buy_hit_rate", "sell_fwd_return_avg", "sell_hit_rate")),
            hide_index=True,
            column_config={
                "strategy": st.column_config.TextColumn("strategy", width=140),
                "buy_fwd_return_avg": st.column_config.TextColumn("buy: fwd return", width=110),
                "buy_hit_rate": st.column_config.TextColumn("buy: hit rate", width=95),
                "sell_fwd_return_avg": st.column_config.TextColumn("sell: fwd return", width=110),
                "sell_hit_rate": st.column_config.TextColumn("sell: hit rate", width=95),
                "horizon_bars": st.column_config.NumberColumn("horizon (bars)", width=100),
            },
            height=min((len(shadow) + 1) * 35 + 3, 600),  # every strategy without scrolling
        )
    else:
        st.caption("No shadow ledger in this run (SHADOW_LEDGER=false or --no-shadow).")


def _narrative_panel(session: Session, run_id: str) -> None:
    st.subheader("Latest audit narrative")
    report = q.latest_narrative(session, run_id)
    if report is None:
        st.caption("No audit report yet.")
        return
    st.caption(
        f"{fmt.when(report['at'])} ({fmt.when_utc(report['at'])}) · {report['kind']} · iteration {report['iteration_id']}"
    )
    st.info(report["text"])


def render_panels(engine: Engine, settings: Settings, run_id: str, benchmark: str | None) -> None:
    try:
        with Session(engine) as session:
            _run_header(session, run_id)
            _state_banner(session, run_id)
            _health_panel(session, settings)
            _equity_panel(session, run_id, benchmark)
            _positions_panel(session, run_id)
            _round_trips_panel(session, run_id)
            _orders_panel(session, run_id)
            _decisions_panel(session, run_id)
            _state_panel(session, run_id)
            _llm_panel(session, run_id)
            _narrative_panel(session, run_id)
    except SQLAlchemyError as exc:  # e.g. the server restarting: say so and try again at the next refresh
        st.error(
            f"Cannot read the database right now ({exc.__class__.__name__}: {_first_line(exc)}); retrying at the next refresh."
        )
    now = datetime.now(UTC)
    local = now.astimezone(fmt.EASTERN)
    st.caption(
        f"Refreshed {local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({now:%H:%M:%S} UTC) · read-only view of the database"
    )


# --------------------------------------------------------------------------------------------------- page


def _run_label(row: pd.Series) -> str:
    span = f"{row['first_session']} .. {row['last_session']}" if row["first_session"] is not None else "no iteration"
    return f"{row['run_id']} · {row['kind']} · {row['status']} · {span}"


def main() -> None:
    st.set_page_config(page_title="agent-trader dashboard", layout="wide")
    args = parse_args(sys.argv[1:])
    try:
        settings = _settings(args.db)
    except SettingsError as exc:
        st.error(f"Invalid configuration: {exc}")
        st.stop()
    url = settings.database_url
    st.sidebar.markdown("**Database** (read-only)")
    st.sidebar.code(safe_url(url), language=None)
    try:
        engine = _engine(url)
    except DatabaseUnavailable as exc:
        st.error(str(exc))
        st.stop()

    with Session(engine) as session:
        runs = q.list_runs(session)
        default = q.default_run_id(session)
    if runs.empty:
        st.title("agent-trader")
        st.info("The database holds no runs yet: start the daemon, `make demo` or a replay.")
        st.stop()
    ids = list(runs["run_id"])
    wanted = st.query_params.get("run")
    if wanted and wanted not in ids:
        st.sidebar.warning(f"No run {wanted!r} in this database; showing the default run.")
    start = ids.index(wanted) if wanted in ids else ids.index(default) if default in ids else 0
    labels = {row["run_id"]: _run_label(row) for _, row in runs.iterrows()}
    run_id = st.sidebar.selectbox("Run", ids, index=start, format_func=labels.__getitem__, key="run")
    if st.query_params.get("run") != run_id:
        st.query_params["run"] = run_id

    with Session(engine) as session:
        summary = q.run_summary(session, run_id)
    symbols = summary["symbols"] or [summary["benchmark_symbol"]]
    bench_default = summary["benchmark_symbol"] if summary["benchmark_symbol"] in symbols else symbols[0]
    benchmark = st.sidebar.selectbox("Benchmark (buy & hold)", symbols, index=symbols.index(bench_default))
    choices = sorted(set(REFRESH_CHOICES) | {max(0, args.refresh)})
    refresh = st.sidebar.selectbox(
        "Refresh every",
        choices,
        index=choices.index(max(0, args.refresh)),
        format_func=lambda s: "off" if s == 0 else f"{s} s",
    )
    st.sidebar.caption(
        f"{len(ids)} run{'' if len(ids) == 1 else 's'} in the database. The page never writes: it only reads."
    )

    panels = st.fragment(run_every=refresh or None)(render_panels)
    panels(engine, settings, run_id, benchmark)


main()
