"""Telemetry of LLM calls: one :class:`LLMCallRecord` per provider attempt-group, and the price table that turns
token counts into an estimated cost.

A record never contains an API key: provider error messages are redacted before they reach it (see
``core.llm.providers``), and the prompt itself is only stored as its SHA-256.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.kernel.domain import ensure_utc
from core.errors import ConfigurationError

MILLION = Decimal(1_000_000)
COST_QUANTUM = Decimal("0.00000001")  # 1e-8 USD: well below any per-call cost, keeps sums readable
DEFAULT_PRICES_PATH = Path(__file__).resolve().parents[2] / "config" / "llm_prices.json"


class CallOutcome(enum.StrEnum):
    OK = "ok"  # answer usable and every symbol got a valid choice
    PARTIAL = "partial"  # answer usable, some symbols abstained (see validation_errors)
    INVALID = "invalid"  # whole answer unusable: malformed JSON, missing tool call, json_validate_failed, ...
    HTTP_ERROR = "http_error"  # non-2xx other than 429 (after retries, when retryable)
    RATE_LIMITED = "rate_limited"  # 429 after retries, or a retry-after longer than the cap
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    BUDGET_EXCEEDED = "budget_exceeded"  # no call made

    @property
    def answered(self) -> bool:
        return self in (CallOutcome.OK, CallOutcome.PARTIAL)


@dataclass(frozen=True, slots=True)
class LLMCallRecord:
    """One provider attempt-group (the first request plus its retries) for one chunk of symbols.

    ``cost_usd`` is ``None`` when the provider/model is missing from the price table (flagged, never guessed).
    ``latency_ms`` covers the whole attempt-group, retry sleeps included.
    """

    provider: str
    model: str
    prompt_version: str
    prompt_hash: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None
    latency_ms: float
    retries: int
    outcome: CallOutcome
    validation_errors: tuple[str, ...]
    started_at: datetime
    symbols: tuple[str, ...]
    error: str | None = None

    def __post_init__(self) -> None:
        ensure_utc(self.started_at, "LLMCallRecord.started_at")
        object.__setattr__(self, "outcome", CallOutcome(self.outcome))
        object.__setattr__(self, "validation_errors", tuple(self.validation_errors))
        object.__setattr__(self, "symbols", tuple(self.symbols))
        if self.input_tokens < 0 or self.output_tokens < 0 or self.retries < 0:
            raise ValueError("token counts and retries must be non-negative")

    @property
    def price_known(self) -> bool:
        return self.cost_usd is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for persistence and logs (Decimal as string, ISO-8601 UTC timestamp)."""
        return {
            "provider": self.provider,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "prompt_hash": self.prompt_hash,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
            "latency_ms": self.latency_ms,
            "retries": self.retries,
            "outcome": self.outcome.value,
            "validation_errors": list(self.validation_errors),
            "started_at": self.started_at.isoformat(),
            "symbols": list(self.symbols),
            "error": self.error,
        }


# ----------------------------------------------------------------------------------------------------------------
# Price table
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million input / output tokens."""

    input_per_million: Decimal
    output_per_million: Decimal

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        raw = (
            Decimal(input_tokens) * self.input_per_million + Decimal(output_tokens) * self.output_per_million
        ) / MILLION
        return raw.quantize(COST_QUANTUM)


class _PriceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)


class _PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    note: str = Field(default="", alias="_note")
    currency: str = "USD"
    unit: str = "per_million_tokens"
    as_of: str = ""
    providers: dict[str, dict[str, _PriceEntry]]


class PriceTableError(ConfigurationError, ValueError):
    """The price file is missing, not JSON, or does not match the expected layout."""


_DATE_SUFFIX = re.compile(r"-\d{8}$")


class PriceTable:
    """Immutable provider/model → :class:`ModelPrice` lookup.

    A model that is not in the table costs ``None`` (unknown, flagged in the record). A dated snapshot name such as
    ``claude-haiku-4-5-20251001`` falls back to its undated alias ``claude-haiku-4-5`` when only the alias is listed.
    """

    def __init__(self, prices: Mapping[tuple[str, str], ModelPrice]) -> None:
        self._prices: Mapping[tuple[str, str], ModelPrice] = MappingProxyType(dict(prices))

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PRICES_PATH) -> PriceTable:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PriceTableError(f"cannot read LLM price table {path}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PriceTableError(f"LLM price table {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from exc
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "<mapping>") -> PriceTable:
        try:
            parsed = _PriceFile.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)
            )
            raise PriceTableError(f"LLM price table {source} is invalid: {problems}") from None
        if parsed.currency != "USD":
            raise PriceTableError(f"LLM price table {source}: currency must be USD, got {parsed.currency!r}")
        prices = {
            (provider, model): ModelPrice(entry.input, entry.output)
            for provider, models in parsed.providers.items()
            for model, entry in models.items()
        }
        return cls(prices)

    def price(self, provider: str, model: str) -> ModelPrice | None:
        found = self._prices.get((provider, model))
        if found is None and _DATE_SUFFIX.search(model):
            found = self._prices.get((provider, _DATE_SUFFIX.sub("", model)))
        return found

    def cost(self, provider: str, model: str, input_tokens: int, output_tokens: int) -> Decimal | None:
        price = self.price(provider, model)
        return None if price is None else price.cost(input_tokens, output_tokens)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 2 and self.price(*key) is not None

    def __len__(self) -> int:
        return len(self._prices)

    def __repr__(self) -> str:
        return f"PriceTable({len(self._prices)} models)"
