"""Narrative tokens: the numbers, dates and times a text claims, in order of appearance.

Tokens
------
:func:`extract_tokens` scans a text left to right and classifies what it finds:

* **dates** - ISO dates ``2021-03-31`` (optionally with a time and offset, ``2021-03-31T20:00:00+00:00``) and
  month-name dates ``March 31, 2021`` / ``31 March 2021`` / ``Mar 31`` (case-sensitive month names). A date is a
  date token, never the numbers 2021, 3 and 31.
* **times** - ``14:30``, ``14:30:05``, ``9:30 am`` (converted to 24 h). Time tokens, not numbers.
* **identifiers** - a word that starts with a letter or ``_`` together with any ``-``/``.``-joined parts:
  ``run-1-000003``, ``S001``, ``BRK.B``, ``v1.2``, ``max_position_pct``. Digits inside them are not numbers.
* **numbers** - integers, decimals, thousands separators (``1,234.56``; a comma group must have exactly three
  digits, so ``3,4`` is the two numbers 3 and 4), a leading ``-``/``−``/``+`` sign when the sign is not glued to a
  word (``-5`` is negative, the ``-`` in ``1-2`` is a range dash), and an optional percent suffix (``%``,
  ``percent``, ``per cent``, ``pct``). A number glued to letters that follow it keeps its numeric part
  (``3x`` -> 3, ``1.2M`` -> 1.2): such a number must still be in the facts.
* **number words** - ``zero`` ... ``twenty`` (case-insensitive) are integers too: "three fills" claims a count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

__all__ = ["DateToken", "NumberToken", "TimeToken", "Token", "extract_numbers", "extract_tokens"]


_MONTHS = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
}

_TOKEN_RE = re.compile(
    r"""
    (?P<iso>(?<![\w.])(?P<iy>\d{4})-(?P<im>\d{2})-(?P<id>\d{2})
        (?:[T\x20](?P<ih>\d{2}):(?P<imin>\d{2})(?::(?P<isec>\d{2})(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?
        (?![\w-]))
    | (?P<mdy>\b(?P<m1>"""
    + _MONTH
    + r""")\.?\x20+(?P<d1>\d{1,2})(?:st|nd|rd|th)?(?:,?\x20+(?P<y1>\d{4})(?![\w-]))?(?![\w:]))
    | (?P<dmy>(?<![\w.])(?P<d2>\d{1,2})(?:st|nd|rd|th)?\x20+(?P<m2>"""
    + _MONTH
    + r""")\.?(?:,?\x20+(?P<y2>\d{4})(?![\w-]))?(?![\w]))
    | (?P<time>(?<![\w.:])(?P<th>\d{1,2}):(?P<tm>\d{2})(?::(?P<ts>\d{2}))?(?![\d:])
        (?:\x20?(?P<ampm>[aApP])\.?[mM]\b\.?)?)
    | (?P<word>(?<![\w-])(?i:twenty-(?:one|two|three|four|five|six|seven|eight|nine)
        |zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen
        |fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty)(?![\w-]))
    | (?P<ident>(?<![\w])[^\W\d]\w*(?:[-.]\w+)*)
    | (?P<num>(?<![\w.])(?P<sign>[-\u2212+])?
        (?:(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?|(?P<lfrac>\.\d+))
        (?P<pct>\x20?%|\x20?(?:percent|per\x20cent|pct)\b)?)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class NumberToken:
    """A number as written: its text, signed value, decimal places, significant digits shown, percent flag."""

    text: str
    value: Decimal
    decimals: int
    significant: int
    percent: bool = False
    sign: Literal["-", "+", ""] = ""
    word: bool = False


@dataclass(frozen=True, slots=True)
class DateToken:
    """A date as written. ``value`` is ``None`` for an impossible date (2021-02-30) or a date without a year, in
    which case ``month_day`` says what was written (``None`` for an impossible one)."""

    text: str
    value: date | None
    month_day: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class TimeToken:
    text: str
    hour: int
    minute: int
    second: int | None


Token = NumberToken | DateToken | TimeToken


def _significant(int_digits: str, frac_digits: str) -> int:
    return len((int_digits + frac_digits).lstrip("0"))


def _make_date(text: str, year: str | None, month: int, day: str) -> DateToken:
    try:
        if year is None:
            date(2000, month, int(day))  # leap year: accepts Feb 29
            return DateToken(text, None, (month, int(day)))
        return DateToken(text, date(int(year), month, int(day)), (month, int(day)))
    except ValueError:
        return DateToken(text, None, None)


def extract_tokens(text: str) -> list[Token]:
    """Numbers, dates and times of ``text`` in order of appearance (identifiers are skipped); see the module doc."""
    tokens: list[Token] = []
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        whole = m.group(0)
        if m.group("iso") is not None:
            tokens.append(_make_date(m.group("iso"), m.group("iy"), int(m.group("im")), m.group("id")))
            if m.group("ih") is not None:
                sec = m.group("isec")
                tokens.append(
                    TimeToken(whole, int(m.group("ih")), int(m.group("imin")), int(sec) if sec is not None else None)
                )
        elif m.group("mdy") is not None:
            tokens.append(_make_date(whole, m.group("y1"), _MONTHS[m.group("m1")[:3].lower()], m.group("d1")))
        elif m.group("dmy") is not None:
            tokens.append(_make_date(whole, m.group("y2"), _MONTHS[m.group("m2")[:3].lower()], m.group("d2")))
        elif m.group("time") is not None:
            hour, minute = int(m.group("th")), int(m.group("tm"))
            ampm = m.group("ampm")
            if ampm is not None and 1 <= hour <= 12:
                hour = hour % 12 + (12 if ampm in "pP" else 0)
            sec = m.group("ts")
            tokens.append(TimeToken(whole, hour, minute, int(sec) if sec is not None else None))
        elif m.group("word") is not None:
            head, _, tail = whole.lower().partition("-")
            number = _WORDS[head] + (_WORDS[tail] if tail else 0)
            tokens.append(NumberToken(whole, Decimal(number), 0, len(str(number).lstrip("0")), word=True))
        elif m.group("num") is not None:
            int_digits = (m.group("int") or "0").replace(",", "")
            frac = m.group("frac") or m.group("lfrac") or ""
            frac_digits = frac[1:]
            value = Decimal(int_digits + frac)
            raw_sign = m.group("sign") or ""
            sign: Literal["-", "+", ""] = "-" if raw_sign in ("-", "\u2212") else ("+" if raw_sign == "+" else "")
            if sign == "-":
                value = -value
            tokens.append(
                NumberToken(
                    whole.strip(),
                    value,
                    len(frac_digits),
                    _significant(int_digits, frac_digits),
                    percent=m.group("pct") is not None,
                    sign=sign,
                )
            )
        else:  # an identifier: digits inside it are not numbers
            assert kind == "ident", kind
    return tokens


def extract_numbers(text: str) -> list[Decimal]:
    """The numbers of ``text`` in order, as written (a percentage keeps its written value: ``12.5%`` -> 12.5).

    Dates and times are not numbers (see :func:`extract_tokens`); digits inside identifiers such as
    ``run-1-000003`` or ``S001`` are ignored; number words ``zero``..``twenty`` count as numbers.
    """
    return [t.value for t in extract_tokens(text) if isinstance(t, NumberToken)]
