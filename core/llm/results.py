"""Value objects returned to the Strategy agent: one :class:`SymbolChoice` per symbol, grouped in a
:class:`SelectionOutcome` together with the telemetry of every provider call made for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING
from collections.abc import Mapping

if TYPE_CHECKING:
    from core.llm.telemetry import LLMCallRecord


@dataclass(frozen=True, slots=True)
class SymbolChoice:
    """The LLM's choice for one symbol, or an explicit abstention.

    Invariant (checked at construction): ``abstained`` ⇔ ``strategy is None``, and ``reason`` is never empty.
    The caller applies its deterministic fallback to every abstention.
    """

    symbol: str
    strategy: str | None
    abstained: bool
    reason: str

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ValueError("SymbolChoice.symbol must be a non-empty string")
        if self.abstained and self.strategy is not None:
            raise ValueError(f"SymbolChoice({self.symbol}): an abstention cannot carry a strategy")
        if not self.abstained and (not isinstance(self.strategy, str) or not self.strategy):
            raise ValueError(f"SymbolChoice({self.symbol}): a choice needs a strategy name")
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise ValueError(f"SymbolChoice({self.symbol}): reason must be a non-empty string")

    @classmethod
    def chosen(cls, symbol: str, strategy: str, reason: str) -> SymbolChoice:
        return cls(symbol=symbol, strategy=strategy, abstained=False, reason=reason)

    @classmethod
    def abstain(cls, symbol: str, reason: str) -> SymbolChoice:
        return cls(symbol=symbol, strategy=None, abstained=True, reason=reason)


@dataclass(frozen=True, slots=True)
class SelectionOutcome:
    """Every asked symbol's choice (same order as the contexts given) and one record per provider call."""

    choices: Mapping[str, SymbolChoice]
    calls: tuple[LLMCallRecord, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.choices, MappingProxyType):
            object.__setattr__(self, "choices", MappingProxyType(dict(self.choices)))
        object.__setattr__(self, "calls", tuple(self.calls))

    @property
    def abstentions(self) -> Mapping[str, SymbolChoice]:
        return MappingProxyType({s: c for s, c in self.choices.items() if c.abstained})

    @property
    def chosen(self) -> Mapping[str, str]:
        """symbol → strategy name, for the symbols that received a valid choice."""
        return MappingProxyType({s: c.strategy for s, c in self.choices.items() if c.strategy is not None})
