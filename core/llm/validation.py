"""Validation of a provider's answer against the closed set of allowed strategies.

Pure functions, no I/O. Two levels of failure:

* the answer as a whole is unusable (not JSON, too large, nested too deeply, not an object with a ``choices``
  array) → :class:`UnusableAnswer` is raised; the selector treats it as a failed call and tries the fallback provider;
* the answer is usable but some entries are not → each symbol concerned gets an abstention with a specific reason,
  entries about symbols that were not asked are ignored, and every problem is listed in
  :attr:`ValidatedAnswer.errors`.

Every asked symbol ends up with exactly one :class:`SymbolChoice`: a strategy from ``allowed``, or an abstention with
a non-empty reason. Nothing here raises on any JSON value (or JSON text) an LLM can produce.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from collections.abc import Collection, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import ExternalError
from core.llm.prompts import MAX_REASON_CHARS, clean_text
from core.llm.results import SymbolChoice

MAX_ANSWER_CHARS = 262_144  # a 40-symbol answer is ~15 kB; anything this large is junk
MAX_ERRORS_KEPT = 50
MAX_ERROR_CHARS = 240
NO_REASON_GIVEN = "(the model gave no reason)"


class UnusableAnswer(ExternalError, ValueError):
    """The answer cannot be interpreted at all; ``str(exc)`` says why (no secrets, bounded length)."""


@dataclass(frozen=True, slots=True)
class ValidatedAnswer:
    choices: Mapping[str, SymbolChoice]  # exactly the asked symbols, in asked order
    errors: tuple[str, ...]

    @property
    def valid_count(self) -> int:
        return sum(1 for c in self.choices.values() if not c.abstained)


class _ChoiceItem(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    symbol: str
    strategy: str
    reason: str


def short(value: str, limit: int = 40) -> str:
    """A bounded, quoted rendering of untrusted text for error messages."""
    text = clean_text(value[: limit * 4], limit)
    return json.dumps(text, ensure_ascii=False)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )


def _strip_code_fence(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and len(stripped) >= 6:
        inner = stripped[3:-3]
        newline = inner.find("\n")
        if newline != -1 and inner[:newline].strip().isalpha():
            inner = inner[newline + 1 :]
        return inner.strip()
    return stripped


def decode_answer(raw: Any) -> Any:
    """Turn a provider payload (JSON text or an already-decoded JSON value) into a JSON value."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise UnusableAnswer("answer is not valid UTF-8") from None
    if not isinstance(raw, str):
        return raw
    if len(raw) > MAX_ANSWER_CHARS:
        raise UnusableAnswer(f"answer too large ({len(raw)} characters > {MAX_ANSWER_CHARS})")
    text = _strip_code_fence(raw)
    if not text:
        raise UnusableAnswer("answer is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnusableAnswer(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise UnusableAnswer("malformed JSON: nested too deeply") from None


def _item_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "entry"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def validate_answer(raw: Any, *, asked: Sequence[str], allowed: Collection[str]) -> ValidatedAnswer:
    """Validate one answer for the symbols ``asked`` against the closed set ``allowed``.

    Raises :class:`UnusableAnswer` when the answer as a whole cannot be used (see module docstring).
    """
    payload = decode_answer(raw)
    if not isinstance(payload, dict):
        raise UnusableAnswer(f"expected a JSON object with a 'choices' array, got {_type_name(payload)}")
    if "choices" not in payload:
        raise UnusableAnswer("answer has no 'choices' field")
    items = payload["choices"]
    if not isinstance(items, list):
        raise UnusableAnswer(f"'choices' must be an array, got {_type_name(items)}")

    errors: list[str] = []
    extra_keys = [k for k in payload if k != "choices"]
    if extra_keys:
        errors.append(f"unexpected top-level fields ignored: {', '.join(short(str(k), 30) for k in extra_keys[:5])}")

    asked_set = set(asked)
    allowed_set = set(allowed)
    max_items = max(4 * len(asked_set), 100)
    if len(items) > max_items:
        errors.append(f"{len(items) - max_items} entries beyond the first {max_items} ignored")
        items = items[:max_items]

    valid: dict[str, list[tuple[str, str]]] = defaultdict(list)  # symbol → [(strategy, reason)]
    invalid: dict[str, list[str]] = defaultdict(list)  # symbol → [problem]

    for idx, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(f"choices[{idx}]: expected an object, got {_type_name(item)}; ignored")
            continue
        symbol = item.get("symbol")
        if not isinstance(symbol, str):
            errors.append(f"choices[{idx}]: 'symbol' must be a string, got {_type_name(symbol)}; ignored")
            continue
        if symbol not in asked_set:
            errors.append(f"choices[{idx}]: symbol {short(symbol)} was not asked about; ignored")
            continue
        try:
            entry = _ChoiceItem.model_validate(item)
        except ValidationError as exc:
            problem = f"invalid answer entry ({_item_errors(exc)})"
            invalid[symbol].append(problem)
            errors.append(f"choices[{idx}] ({symbol}): {problem}")
            continue
        if entry.strategy not in allowed_set:
            problem = f"strategy {short(entry.strategy)} is not one of the allowed strategies"
            invalid[symbol].append(problem)
            errors.append(f"choices[{idx}] ({symbol}): {problem}")
            continue
        reason = clean_text(entry.reason, MAX_REASON_CHARS) or NO_REASON_GIVEN
        valid[symbol].append((entry.strategy, reason))

    choices: dict[str, SymbolChoice] = {}
    for symbol in asked:
        if symbol in choices:
            continue
        good, bad = valid.get(symbol, []), invalid.get(symbol, [])
        if not good and not bad:
            choices[symbol] = SymbolChoice.abstain(symbol, "no answer for this symbol")
            errors.append(f"{symbol}: missing from the answer")
        elif not bad and len({strategy for strategy, _ in good}) == 1:
            strategy, reason = good[0]
            if len(good) > 1:
                errors.append(f"{symbol}: answered {len(good)} times with the same strategy; first kept")
            choices[symbol] = SymbolChoice.chosen(symbol, strategy, reason)
        elif not good and len(bad) == 1:
            choices[symbol] = SymbolChoice.abstain(symbol, bad[0])
        else:
            strategies = sorted({strategy for strategy, _ in good})
            detail = f"{len(good) + len(bad)} conflicting answers"
            if strategies:
                detail += f" (valid: {', '.join(strategies)}; invalid: {len(bad)})"
            choices[symbol] = SymbolChoice.abstain(symbol, detail)
            errors.append(f"{symbol}: {detail}")

    return ValidatedAnswer(MappingProxyType(choices), _bounded(errors))


def _bounded(errors: list[str]) -> tuple[str, ...]:
    kept = [e if len(e) <= MAX_ERROR_CHARS else e[: MAX_ERROR_CHARS - 1] + "…" for e in errors[:MAX_ERRORS_KEPT]]
    if len(errors) > MAX_ERRORS_KEPT:
        kept.append(f"... {len(errors) - MAX_ERRORS_KEPT} more validation errors")
    return tuple(kept)
