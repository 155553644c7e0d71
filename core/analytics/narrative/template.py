"""The deterministic narrative of an iteration: the text recorded when no LLM narrates (or its narrative is refused),
built only from the facts mapping the audit record carries, so every number in it is a fact."""

from __future__ import annotations

from typing import Any
from collections.abc import Mapping

__all__ = ["summarize"]


def summarize(facts: Mapping[str, Any]) -> str:
    """The deterministic narrative of an iteration; every number in it comes from ``facts``."""
    parts = [
        f"{facts['as_of'][:10]}: {facts['symbols_ok']}/{facts['symbols_total']} symbols with usable data "
        f"(quality {facts['data_quality_pct']}%)"
    ]
    if facts["rejected"]:
        parts.append("excluded " + ", ".join(f"{s} ({r})" for s, r in facts["rejected"].items()))
    if facts.get("flagged"):
        parts.append("flagged, no new entries " + ", ".join(f"{s} ({r})" for s, r in facts["flagged"].items()))
    sig = facts["signals"]
    parts.append(f"signals BUY {sig.get('BUY', 0)}, SELL {sig.get('SELL', 0)}, HOLD {sig.get('HOLD', 0)}")
    parts.append(f"risk approved {facts['approvals']}, denied {facts['denials']}")
    if facts["denials_by_rule"]:
        parts.append("denials by rule: " + ", ".join(f"{r} {n}" for r, n in sorted(facts["denials_by_rule"].items())))
    parts.append(f"orders submitted {facts['orders_submitted']}, fills {facts['fills']}")
    if facts.get("equity") is not None:
        parts.append(f"equity {facts['equity']} (cash {facts['cash']}, {facts['positions']} positions)")
    if facts.get("status") != "ok":
        parts.append(f"iteration {facts['status']}: {facts.get('error')}")
    return "; ".join(parts) + "."
