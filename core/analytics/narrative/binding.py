"""Bound narratives: every figure of a kept narrative is a named fact that our code writes in.

A value check alone cannot tell "Risk approved 6 orders" from "6 symbols": both 6s are in the facts. So the model
never writes a figure. It writes a reference ``{name}`` to a named fact (``{approvals}``, ``{fills}``,
``{denials_by_rule.max_positions}``, ``{orders[0].qty}``) and :func:`bind_narrative` renders it. A narrative is kept
only when

1. every reference names a fact (:func:`named_figures`);
2. the text outside the references claims no number, date or time at all (the token rules of
   :mod:`core.analytics.narrative.tokens`; identifiers such as ``BRK.B`` or ``S001`` are not numbers);
3. every reference sits in the same clause as a word for what it counts: a word that starts with the stem of one of
   the words of its name (``{approvals}`` near "approved", ``{denials_by_rule.max_positions}`` near "denied" or
   "positions") or with one of a few synonyms (``{fills}`` near "filled" or "executed", ``{equity}`` near "account"
   or "portfolio"). "Risk approved {symbols_total} orders" is rejected: nothing in its clause says "symbol".

Clauses are split at ``. ; :`` and commas, and at "and"/"but"/"while"/"with"/"after"/"before".
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from collections.abc import Mapping

from core.analytics.narrative.tokens import extract_tokens

__all__ = ["BoundNarrative", "bind_narrative", "named_figures"]

REFERENCE = re.compile(r"\{([A-Za-z_][\w.\[\]-]*)\}")
_CLAUSE_SPLIT = re.compile(r"[.;:!?,()]|\b(?:and|but|while|with|after|before|whereas)\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z]+")
_STOP = frozenset({"by", "the", "of", "pct", "total", "ok", "max", "min", "usd", "count", "per", "rule", "id", "n"})
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "fills": ("fill", "execut", "bought", "sold", "trade"),
    "qty": ("share", "quant", "unit", "lot", "bought", "sold"),
    "quantity": ("share", "quant", "unit", "bought", "sold"),
    "orders": ("order", "bought", "sold", "buy", "sell", "submit", "placed"),
    "orders_submitted": ("order", "submit", "placed", "sent"),
    "approvals": ("approv", "accept", "allow", "pass"),
    "denials": ("deni", "reject", "refus", "block", "veto"),
    "equity": ("equit", "account", "portfolio", "value", "worth"),
    "change": ("change", "fell", "rose", "gain", "lost", "loss", "up", "down", "drop", "increas", "decreas", "moved"),
    "pnl": ("profit", "loss", "gain", "fell", "rose", "change", "pnl", "return"),
    "exposure": ("expos", "invest", "gross", "deploy", "market", "position"),
    "gross": ("gross", "expos", "invest", "market"),
    "price": ("price", "at", "cost", "per"),
    "cash": ("cash",),
    "positions": ("posit", "holding", "held", "open"),
    "symbols": ("symbol", "stock", "ticker", "name", "instrument"),
    "ok": ("usable", "clean", "good", "valid"),
    "signals": ("signal",),
    "data_quality": ("quality", "data", "usable", "coverage"),
    "session": ("on", "session", "day", "date"),
    "as_of": ("on", "as", "session", "day", "date", "at"),
    "buy": ("buy", "long", "purchas"),
    "sell": ("sell", "exit", "short"),
    "hold": ("hold", "neutral", "no"),
}


@dataclass(frozen=True, slots=True)
class BoundNarrative:
    """``text``: the narrative with its references rendered (only meaningful when ``ok``)."""

    ok: bool
    text: str
    reason: str
    problems: tuple[str, ...] = ()
    references: int = 0


def _render(value: Any) -> str | None:
    """How a fact value is written into a narrative; ``None``: not a figure (no reference needed or allowed)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, enum.Enum):
        return _render(value.value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, str):
        return value if extract_tokens(value) else None  # a text with a number, date or time in it is a figure
    return None


def named_figures(facts: Mapping[str, Any]) -> dict[str, str]:
    """name → rendered value of every figure in ``facts`` (nested mappings by dotted names, lists by ``[i]``)."""
    found: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(f"{prefix}[{i}]", item)
        else:
            rendered = _render(value)
            if rendered is not None and prefix:
                found[prefix] = rendered

    walk("", facts)
    return found


def _stems(name: str) -> set[str]:
    stems: set[str] = set()
    parts = [p for p in re.split(r"[.\[\]]", name) if p and not p.isdigit()]
    for part in parts:
        stems.update(_SYNONYMS.get(part.lower(), ()))
        for word in re.split(r"[_\-\s]+", part):
            low = word.lower()
            if not low or low in _STOP:
                continue
            stems.update(_SYNONYMS.get(low, ()))
            if len(low) >= 3 and low.isalpha():
                stems.add(low[:4])
    return stems


def _clause_of(text: str, start: int, end: int) -> str:
    left = max((m.end() for m in _CLAUSE_SPLIT.finditer(text, 0, start)), default=0)
    right = next((m.start() for m in _CLAUSE_SPLIT.finditer(text, end)), len(text))
    return text[left:start] + " " + text[end:right]


def bind_narrative(text: str, facts: Mapping[str, Any]) -> BoundNarrative:
    """Check ``text`` (written with ``{name}`` references) against ``facts`` and render it (module doc)."""
    if not text or not text.strip():
        return BoundNarrative(False, "", "empty narrative")
    figures = named_figures(facts)
    problems: list[str] = []
    references = list(REFERENCE.finditer(text))
    for match in references:
        name = match.group(1)
        if name not in figures:
            problems.append(f"{{{name}}} names no fact")
            continue
        clause = REFERENCE.sub(" ", _clause_of(text, match.start(), match.end()))
        words = [w.lower() for w in _WORD.findall(clause)]
        stems = _stems(name)
        if not any(w.startswith(s) for w in words for s in stems):
            problems.append(f"{{{name}}} is not next to what it counts")
    bare = REFERENCE.sub(" ", text)
    unbound = [t.text for t in extract_tokens(bare)]
    if unbound:
        problems.append("figures not bound to a named fact: " + ", ".join(dict.fromkeys(unbound)))
    if problems:
        return BoundNarrative(False, "", "; ".join(problems), tuple(problems), len(references))
    rendered = REFERENCE.sub(lambda m: figures[m.group(1)], text)
    return BoundNarrative(True, rendered, f"all {len(references)} figures bound to named facts", (), len(references))
