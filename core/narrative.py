"""Iteration narratives: an optional LLM summary that is only kept when every number in it comes from the facts.

The audit agent builds a ``facts`` mapping for each iteration and a deterministic ``template(facts)`` text. A
:class:`AnthropicNarrator` asks Claude for a short plain-English summary of the same facts, then checks it with
:func:`validate_narrative`; anything doubtful (an unknown number, an HTTP error, a timeout, an empty or truncated
answer) falls back to the template text, and the rejected narrative and the reason are kept in the
:class:`NarrativeResult` so they can be recorded. A :class:`TemplateNarrator` has the same interface for a daemon
without an API key.

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

import asyncio
import enum
import json
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, Protocol

import httpx2
from loguru import logger
from pydantic import SecretStr

from core.llm.providers import Redactor, bounded, non_negative_int, status_error_text

if TYPE_CHECKING:
    import anthropic

__all__ = [
    "AnthropicNarrator",
    "DateToken",
    "FactIndex",
    "NarrativeCall",
    "NarrativeCheck",
    "NarrativeOutcome",
    "NarrativeResult",
    "Narrator",
    "NumberToken",
    "TemplateNarrator",
    "TimeToken",
    "build_anthropic_narrator",
    "extract_numbers",
    "extract_tokens",
    "fact_numbers",
    "index_facts",
    "validate_narrative",
]

# ------------------------------------------------------------------------------------------------------ tokens

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
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
            value = _WORDS[head] + (_WORDS[tail] if tail else 0)
            tokens.append(NumberToken(whole, Decimal(value), 0, len(str(value).lstrip("0")), word=True))
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


# ------------------------------------------------------------------------------------------------------- facts


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
    return NarrativeCheck(
        True, (), f"all {n_numbers} numbers and {n_other} dates/times match the facts", len(tokens)
    )


# ---------------------------------------------------------------------------------------------------- narrators


class NarrativeOutcome(enum.StrEnum):
    OK = "ok"  # faithful narrative, used
    UNFAITHFUL = "unfaithful"  # a number/date not in the facts
    EMPTY = "empty"  # no text in the answer
    TRUNCATED = "truncated"  # stop_reason=max_tokens
    REFUSED = "refused"  # stop_reason=refusal
    HTTP_ERROR = "http_error"  # non-2xx (after the SDK's retries), 529 overloaded included
    RATE_LIMITED = "rate_limited"  # 429 after the SDK's retries
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    INVALID_RESPONSE = "invalid_response"  # body not JSON / not a message


@dataclass(frozen=True, slots=True)
class NarrativeCall:
    """One narration request. ``error`` (redacted, bounded) is set when the call itself failed."""

    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    outcome: NarrativeOutcome
    error: str | None
    started_at: datetime

    def __post_init__(self) -> None:
        _require_utc(self.started_at, "NarrativeCall.started_at")
        object.__setattr__(self, "outcome", NarrativeOutcome(self.outcome))

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "latency_ms": self.latency_ms,
            "outcome": self.outcome.value,
            "error": self.error,
            "started_at": self.started_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class NarrativeResult:
    """The text to record. ``kind="template"`` means the deterministic text; then ``rejected_text`` is the LLM's
    narrative that was refused (``None`` when there was none) and ``reason`` says why."""

    kind: Literal["llm", "template"]
    text: str
    rejected_text: str | None
    reason: str
    call: NarrativeCall | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "rejected_text": self.rejected_text,
            "reason": self.reason,
            "call": self.call.to_dict() if self.call is not None else None,
        }


Template = Callable[[Mapping[str, Any]], str]


class Narrator(Protocol):
    async def narrate(self, facts: Mapping[str, Any]) -> NarrativeResult: ...


class TemplateNarrator:
    """No LLM: always the deterministic template text."""

    def __init__(self, template: Template, *, reason: str = "no LLM narrator configured") -> None:
        self._template = template
        self._reason = reason

    async def narrate(self, facts: Mapping[str, Any]) -> NarrativeResult:
        return NarrativeResult("template", self._template(facts), None, self._reason, None)


SYSTEM_PROMPT = """\
You write the audit summary of one iteration of an automated paper-trading system for its operator.
Write 3 to 6 plain-English sentences describing the facts you are given. Plain text only: no markdown, no lists,
no headings.
Rules for numbers, which are checked automatically:
- Use only numbers, dates and times that appear in the facts. You may round a number to fewer decimals (keep at
  least two significant digits) or write a fraction as a percentage; never compute new numbers (no sums,
  differences, ratios or averages).
- Write numbers with digits, never as words. Write dates exactly as YYYY-MM-DD.
- Do not mention identifiers such as the iteration id.
Do not speculate, predict or give advice."""


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def facts_prompt(facts: Mapping[str, Any]) -> str:
    """The user message: the facts as a JSON block."""
    block = json.dumps(facts, sort_keys=True, indent=1, ensure_ascii=False, default=_json_default)
    return f"Facts of the iteration (JSON):\n```json\n{block}\n```\nWrite the summary."


def _require_utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    if value.utcoffset() != timedelta(0):
        raise ValueError(f"{what} must be in UTC, got {value.isoformat()}")
    return value


class AnthropicNarrator:
    """Claude writes the narrative; :func:`validate_narrative` decides whether it is kept.

    ``clock`` gives the (UTC) start time of each call, ``monotonic`` (seconds) its latency. ``timeout_s`` bounds
    the whole call, the SDK's own retries included. SDK errors are turned into a template result with the reason;
    any other exception (a bug) propagates.
    """

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        model: str,
        *,
        template: Template,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        max_tokens: int = 400,
        timeout_s: float = 20,
        redactor: Redactor | None = None,
    ) -> None:
        if not model:
            raise ValueError("anthropic model name is required")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
        self._client = client
        self._model = model
        self._template = template
        self._clock = clock
        self._monotonic = monotonic
        self._max_tokens = max_tokens
        self._timeout_s = float(timeout_s)
        self._redact = redactor or Redactor(None)

    @property
    def model(self) -> str:
        return self._model

    def __repr__(self) -> str:
        return f"AnthropicNarrator(model={self._model!r}, max_tokens={self._max_tokens}, timeout_s={self._timeout_s})"

    async def aclose(self) -> None:
        await self._client.close()

    async def narrate(self, facts: Mapping[str, Any]) -> NarrativeResult:
        import anthropic  # loaded with the first narration, not with every command (over a second of imports)

        started_at = _require_utc(self._clock(), "clock()")
        t0 = self._monotonic()
        tokens_in = tokens_out = 0
        outcome: NarrativeOutcome
        error: str | None = None
        text = ""
        rejected: str | None = None
        reason: str
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.messages.create(
                    model=self._model,
                    max_tokens=self._max_tokens,
                    system=SYSTEM_PROMPT,
                    messages=[{"role": "user", "content": facts_prompt(facts)}],
                    timeout=self._timeout_s,
                )
        except (TimeoutError, anthropic.APITimeoutError):
            outcome, error = NarrativeOutcome.TIMEOUT, f"no answer within {self._timeout_s:g} s"
        except anthropic.APIConnectionError as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "unknown cause"
            outcome, error = NarrativeOutcome.CONNECTION_ERROR, f"connection error ({cause})"
        except anthropic.RateLimitError as exc:
            outcome, error = NarrativeOutcome.RATE_LIMITED, bounded(status_error_text(exc), self._redact)
        except anthropic.APIStatusError as exc:
            outcome, error = NarrativeOutcome.HTTP_ERROR, bounded(status_error_text(exc), self._redact)
        except (anthropic.APIResponseValidationError, json.JSONDecodeError, UnicodeDecodeError):
            outcome, error = NarrativeOutcome.INVALID_RESPONSE, "response is not a valid message"
        else:
            usage = getattr(response, "usage", None)
            tokens_in = non_negative_int(getattr(usage, "input_tokens", 0))
            tokens_out = non_negative_int(getattr(usage, "output_tokens", 0))
            outcome, text, error = self._read(response)
        latency_ms = max(0.0, (self._monotonic() - t0) * 1000.0)

        if outcome is NarrativeOutcome.OK:
            check = validate_narrative(text, facts)
            if check.ok:
                reason = f"faithful: {check.reason}"
            else:
                outcome, rejected = NarrativeOutcome.UNFAITHFUL, text
                reason = f"unfaithful: {check.reason}"
        elif outcome in (NarrativeOutcome.TRUNCATED, NarrativeOutcome.REFUSED):
            rejected = text or None
            reason = f"{outcome.value}: {error}"
        else:
            reason = f"{outcome.value}: {error}"

        call = NarrativeCall(
            model=self._model,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            latency_ms=latency_ms,
            outcome=outcome,
            error=error,
            started_at=started_at,
        )
        if outcome is NarrativeOutcome.OK:
            return NarrativeResult("llm", text, None, reason, call)
        logger.warning("narrative: template used ({})", reason)
        return NarrativeResult("template", self._template(facts), rejected, reason, call)

    @staticmethod
    def _read(response: Any) -> tuple[NarrativeOutcome, str, str | None]:
        raw_stop = getattr(response, "stop_reason", None)
        stop = raw_stop if isinstance(raw_stop, str) else "unknown"
        content = getattr(response, "content", None)
        blocks = content if isinstance(content, list) else []
        parts = [
            block.text
            for block in blocks
            if getattr(block, "type", None) == "text" and isinstance(getattr(block, "text", None), str)
        ]
        text = "\n".join(p.strip() for p in parts if p.strip()).strip()
        if stop == "refusal":
            return NarrativeOutcome.REFUSED, text, "the model refused (stop_reason=refusal)"
        if stop == "max_tokens":
            return NarrativeOutcome.TRUNCATED, text, "answer truncated (stop_reason=max_tokens)"
        if not text:
            return NarrativeOutcome.EMPTY, "", f"no text in the answer (stop_reason={stop})"
        return NarrativeOutcome.OK, text, None


def build_anthropic_narrator(
    api_key: SecretStr | str,
    model: str,
    *,
    template: Template,
    clock: Callable[[], datetime],
    monotonic: Callable[[], float],
    base_url: str | None = None,
    http_client: httpx2.AsyncClient | None = None,
    timeout_s: float = 20,
    max_tokens: int = 400,
    max_retries: int = 1,
) -> AnthropicNarrator:
    """An ``AsyncAnthropic`` client (``max_retries`` small: narration is optional) wrapped as a narrator.

    ``http_client`` must be an ``httpx2.AsyncClient`` (the 2.x SDK is built on httpx2). The key never appears in
    the narrator's repr or in recorded errors.
    """
    key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    if not isinstance(key, str) or not key.strip():
        raise ValueError("anthropic API key is empty")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 3:
        raise ValueError(f"max_retries must be an integer in 0..3, got {max_retries!r}")
    if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
    import anthropic

    client = anthropic.AsyncAnthropic(
        api_key=key,
        base_url=base_url,
        timeout=float(timeout_s),
        max_retries=max_retries,
        http_client=http_client,
    )
    return AnthropicNarrator(
        client,
        model,
        template=template,
        clock=clock,
        monotonic=monotonic,
        max_tokens=max_tokens,
        timeout_s=timeout_s,
        redactor=Redactor(key),
    )
