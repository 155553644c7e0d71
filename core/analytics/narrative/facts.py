"""Grounding: which numbers, dates and times a facts mapping holds, and whether a narrative stays within them.

Tolerance rule (what "faithful" means)
--------------------------------------
Let a narrative number show value ``v`` with ``d`` decimal places and ``s`` significant digits (thousands
separators ignored; ``0.61`` has d=2, s=2; ``100,015`` has d=0, s=6). It is faithful when some fact number ``f``
satisfies one of:

1. **exact** - ``v == f'``;
2. **rounded** - ``|v - f'| <= 0.5 * 10**-d`` (``f`` rounded to the places the narrative shows, half-up or
   half-even) **and** ``s >= 2``: rounding must keep at least two significant digits, so 0.6137 allows ``0.61``,
   ``0.614`` and ``61%``, but not ``1`` or ``0.6``, and 100,014.53 allows ``100,015`` but not ``100,000``;

where ``f'`` is the fact itself and, for a percentage only, also ``f * 100`` (0.6137 allows ``61.37%``,
``61.4%``, ``61%``; a fact already in percent, 96.7, allows ``96.7%`` and ``97%``). Signs: a number written with
``-`` must match a negative fact, one written with ``+`` a positive fact, and an unsigned number is compared with
``|f|`` (so "fell 2.3%" may describe a fact of -0.023). Number words are counts: they must equal a fact exactly.
Small integers get no free pass: "3 symbols" needs a 3 somewhere in the facts.

Limits: the check is about values, not meaning. A number that exists in the facts but is attached to the wrong
thing ("4 fills" when 4 is the position count) passes, and so does ``0.61%`` for a fact of 0.6137 (the fact could
already be a percentage). The check catches invented, computed and mis-rounded numbers, dates and times.

A date must be a date of the facts (a month-name date without a year matches any fact date with that month and
day); a time must be a time of day appearing in the facts (``HH:MM``, and the seconds when written).

Fact numbers (:func:`fact_numbers`) are every number anywhere in the facts: ints, floats (by their shortest
``repr``, so 0.6137 is exactly 0.6137), Decimals, and every number token inside strings (``"100,014.53"``,
an error message's ``HTTP 500``), in nested mappings (keys included) and sequences. Booleans are not numbers;
ISO timestamps in strings are dates and times, not numbers.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from collections.abc import Iterable, Mapping

from core.analytics.narrative.tokens import DateToken, NumberToken, TimeToken, extract_tokens

__all__ = ["FactIndex", "NarrativeCheck", "fact_numbers", "index_facts", "validate_narrative"]


@dataclass(frozen=True, slots=True)
class FactIndex:
    """Every number, date and time of day found in a facts mapping."""

    numbers: frozenset[Decimal]
    dates: frozenset[date]
    times: frozenset[tuple[int, int, int | None]]


def _float_to_decimal(value: float) -> Decimal | None:
    if not math.isfinite(value):
        return None
    return Decimal(repr(value))


def index_facts(facts: Mapping[str, Any]) -> FactIndex:
    """Walk ``facts`` (nested mappings, keys included, and sequences) and collect numbers, dates and times."""
    numbers: set[Decimal] = set()
    dates: set[date] = set()
    times: set[tuple[int, int, int | None]] = set()

    def add_time(t: time) -> None:
        times.add((t.hour, t.minute, t.second))

    def scan(text: str) -> None:
        for token in extract_tokens(text):
            if isinstance(token, NumberToken):
                numbers.add(token.value)
            elif isinstance(token, DateToken):
                if token.value is not None:
                    dates.add(token.value)
            else:
                times.add((token.hour, token.minute, token.second if token.second is not None else 0))

    stack: list[Any] = [facts]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, enum.Enum):
            stack.append(item.value)
        elif isinstance(item, str):
            scan(item)
        elif isinstance(item, int):
            numbers.add(Decimal(item))
        elif isinstance(item, float):
            dec = _float_to_decimal(item)
            if dec is not None:
                numbers.add(dec)
        elif isinstance(item, Decimal):
            if item.is_finite():
                numbers.add(item)
        elif isinstance(item, datetime):
            dates.add(item.date())
            add_time(item.timetz())
        elif isinstance(item, date):
            dates.add(item)
        elif isinstance(item, time):
            add_time(item)
        elif isinstance(item, Mapping):
            if id(item) in seen:
                continue
            seen.add(id(item))
            for key, value in item.items():
                stack.append(key)
                stack.append(value)
        elif isinstance(item, (list, tuple, set, frozenset)):
            if id(item) in seen:
                continue
            seen.add(id(item))
            stack.extend(item)
        else:  # anything else reaches the prompt as str(item): index what the model will see
            scan(str(item))
    return FactIndex(frozenset(numbers), frozenset(dates), frozenset(times))


def fact_numbers(facts: Mapping[str, Any]) -> set[Decimal]:
    """Every number appearing anywhere in ``facts`` (exact values; the rounding tolerance is applied when a
    narrative number is compared with them, see the module doc)."""
    return set(index_facts(facts).numbers)


_HUNDRED = Decimal(100)


def _number_is_faithful(token: NumberToken, numbers: Iterable[Decimal]) -> bool:
    half_unit = Decimal(5).scaleb(-(token.decimals + 1))
    for fact in numbers:
        candidates = (fact, fact * _HUNDRED) if token.percent and not token.word else (fact,)
        for f in candidates:
            if token.sign == "-":
                if f >= 0:
                    continue
                target = f
            elif token.sign == "+":
                if f <= 0:
                    continue
                target = f
            else:
                target = abs(f)
            if token.value == target:
                return True
            if not token.word and token.significant >= 2 and abs(token.value - target) <= half_unit:
                return True
    return False


def _date_is_faithful(token: DateToken, dates: frozenset[date]) -> bool:
    if token.value is not None:
        return token.value in dates
    if token.month_day is None:
        return False
    return any((d.month, d.day) == token.month_day for d in dates)


def _time_is_faithful(token: TimeToken, times: frozenset[tuple[int, int, int | None]]) -> bool:
    return any(
        h == token.hour and m == token.minute and (token.second is None or s == token.second) for h, m, s in times
    )


@dataclass(frozen=True, slots=True)
class NarrativeCheck:
    """``unknown_numbers``: the numbers, dates and times of the narrative (as written) that the facts lack."""

    ok: bool
    unknown_numbers: tuple[str, ...]
    reason: str
    checked: int = 0


def validate_narrative(text: str, facts: Mapping[str, Any] | FactIndex) -> NarrativeCheck:
    """Is every number, date and time of ``text`` backed by ``facts`` under the tolerance rule (module doc)?"""
    if not text or not text.strip():
        return NarrativeCheck(False, (), "empty narrative")
    index = facts if isinstance(facts, FactIndex) else index_facts(facts)
    unknown: list[str] = []
    tokens = extract_tokens(text)
    for token in tokens:
        if isinstance(token, NumberToken):
            ok = _number_is_faithful(token, index.numbers)
        elif isinstance(token, DateToken):
            ok = _date_is_faithful(token, index.dates)
        else:
            ok = _time_is_faithful(token, index.times)
        if not ok and token.text not in unknown:
            unknown.append(token.text)
    if unknown:
        return NarrativeCheck(False, tuple(unknown), "not in the facts: " + ", ".join(unknown), len(tokens))
    n_numbers = sum(1 for t in tokens if isinstance(t, NumberToken))
    n_other = len(tokens) - n_numbers
    return NarrativeCheck(True, (), f"all {n_numbers} numbers and {n_other} dates/times match the facts", len(tokens))
