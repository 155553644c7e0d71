"""Read-only reports over the trading database: round trips, performance, calibration, breakers, risk, reconciliation
and the "why" of one symbol on one day.

Pure query functions: each takes a SQLAlchemy ``Session`` and filters, reads, and returns plain values (dicts,
dataclasses, :class:`~core.analytics.metrics.ClosedTrade`). No writes, no clock. Metrics are never re-implemented here: they
come from :mod:`core.analytics.metrics` and :mod:`core.analytics.calibration`. Money stays ``Decimal`` as read from the database and is
converted to ``float`` only where a metric function needs it.

Filters
-------
* ``run_id``: one run. ``None`` means every run, except for the per-run reports (:func:`performance`,
  :func:`risk_view`) where it means the **latest** run (by ``runs.started_at``). An unknown run id raises
  ``LookupError``.
* ``symbol``: case-insensitive.
* ``start`` / ``end``: inclusive UTC calendar dates (``end`` covers the whole day).

Round trips (long-only, average cost, flat to flat) are described in :mod:`core.analytics.reporting.trips`.

Layout (every name below is re-exported here, so callers import from ``core.analytics.reporting``):

* :mod:`core.analytics.reporting.filters`: date window, symbol, ``latest_run_id``, ``run_list``;
* :mod:`core.analytics.reporting.trips`: ``rebuild_round_trips``, ``round_trips`` and their dataclasses;
* :mod:`core.analytics.reporting.performance_report`: ``performance``, ``calibration``;
* :mod:`core.analytics.reporting.breaker_report`: ``breakers``;
* :mod:`core.analytics.reporting.risk_report`: ``risk_view``;
* :mod:`core.analytics.reporting.reconcile_report`: ``reconcile_view``;
* :mod:`core.analytics.reporting.why_report`: ``why``, ``PIPELINE_ORDER``;
* :mod:`core.analytics.reporting.llm_report`: ``llm_usage``, ``shadow_stats``, ``shadow_entries``, ``percentile``;
* :mod:`core.analytics.reporting.listings`: ``list_trades``, ``list_orders``, ``list_decisions``, ``list_equity``,
  ``list_runs`` (row listings);
* :mod:`core.analytics.reporting.output`: ``render_table``, ``render_csv``, ``render_json``, ``json_ready``, ``plain`` and the
  readable text of each report (``render_performance`` ... ``render_why``).
"""

from __future__ import annotations

from core.analytics.reporting.breaker_report import BREAKER_PREFIX, breakers
from core.analytics.reporting.filters import latest_run_id, run_list
from core.analytics.reporting.listings import (
    RUN_LISTING_COLUMNS,
    list_decisions,
    list_equity,
    list_orders,
    list_runs,
    list_trades,
)
from core.analytics.reporting.llm_report import llm_usage, percentile, selection_mix, shadow_entries, shadow_stats
from core.analytics.reporting.output import (
    json_ready,
    plain,
    render_breakers,
    render_calibration,
    render_csv,
    render_json,
    render_performance,
    render_reconcile,
    render_risk,
    render_table,
    render_why,
)
from core.analytics.reporting.performance_report import calibration, performance
from core.analytics.reporting.reconcile_report import reconcile_view
from core.analytics.reporting.risk_report import DENIED_PREFIX, RISK_STATE_KEY, risk_view
from core.analytics.reporting.trips import (
    RoundTrip,
    RoundTripBook,
    TripFill,
    UnmatchedSell,
    rebuild_round_trips,
    round_trips,
)
from core.analytics.reporting.why_report import PIPELINE_ORDER, why

__all__ = [
    "BREAKER_PREFIX",
    "DENIED_PREFIX",
    "PIPELINE_ORDER",
    "RISK_STATE_KEY",
    "RUN_LISTING_COLUMNS",
    "RoundTrip",
    "RoundTripBook",
    "TripFill",
    "UnmatchedSell",
    "breakers",
    "calibration",
    "latest_run_id",
    "json_ready",
    "list_decisions",
    "list_equity",
    "list_orders",
    "list_runs",
    "list_trades",
    "llm_usage",
    "selection_mix",
    "percentile",
    "performance",
    "plain",
    "rebuild_round_trips",
    "reconcile_view",
    "render_breakers",
    "render_calibration",
    "render_csv",
    "render_json",
    "render_performance",
    "render_reconcile",
    "render_risk",
    "render_table",
    "render_why",
    "risk_view",
    "round_trips",
    "run_list",
    "shadow_entries",
    "shadow_stats",
    "why",
]
