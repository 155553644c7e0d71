"""LLM strategy selection: an LLM only *chooses* among registered strategies, per symbol, from a closed set.

Public API::

    from core.llm import (LLMSelector, SymbolChoice, SelectionOutcome, LLMCallRecord, CallOutcome, DailyBudget,
                          PriceTable, RetryPolicy, build_groq_provider, build_anthropic_provider)

Wiring (composition root)::

    prices = PriceTable.load("config/llm_prices.json")
    budget = DailyBudget(max_calls=200, max_usd=Decimal("2.00"), clock=clock.now)
    budget.restore_from_records(repository.llm_calls_today())          # after a restart
    selector = LLMSelector(
        [build_groq_provider(settings.groq_api_key, "openai/gpt-oss-120b", timeout_s=20),
         build_anthropic_provider(settings.anthropic_api_key, "claude-haiku-4-5", timeout_s=30)],
        budget=budget, prices=prices, chunk_size=40, clock=clock.now, monotonic=time.monotonic)
    outcome = await selector.select(contexts, allowed=registry.names(), descriptions=registry.descriptions())
"""

from typing import TYPE_CHECKING, Any

from core.llm.budget import BudgetUsage, DailyBudget
from core.llm.prompts import PROMPT_VERSION, TOOL_NAME, SelectionRequest, build_selection_request
from core.llm.providers import ProviderCallError, ProviderReply, RetryPolicy, SelectionProvider
from core.llm.selection import LLMSelector
from core.llm.telemetry import DEFAULT_PRICES_PATH, CallOutcome, LLMCallRecord, ModelPrice, PriceTable, PriceTableError
from core.llm.results import SelectionOutcome, SymbolChoice
from core.llm.validation import UnusableAnswer, ValidatedAnswer, validate_answer

if TYPE_CHECKING:
    from core.llm.anthropic_client import AnthropicSelectionProvider, build_anthropic_provider
    from core.llm.groq_client import GroqSelectionProvider, build_groq_provider

# The SDK clients load on first use: importing anthropic and groq costs over a second, and most commands (status,
# health, replays and backtests without --llm) never call an LLM.
_LAZY = {
    "AnthropicSelectionProvider": "core.llm.anthropic_client",
    "build_anthropic_provider": "core.llm.anthropic_client",
    "GroqSelectionProvider": "core.llm.groq_client",
    "build_groq_provider": "core.llm.groq_client",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'core.llm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "PROMPT_VERSION",
    "TOOL_NAME",
    "DEFAULT_PRICES_PATH",
    "AnthropicSelectionProvider",
    "BudgetUsage",
    "CallOutcome",
    "DailyBudget",
    "GroqSelectionProvider",
    "LLMCallRecord",
    "LLMSelector",
    "ModelPrice",
    "PriceTable",
    "PriceTableError",
    "ProviderCallError",
    "ProviderReply",
    "RetryPolicy",
    "SelectionOutcome",
    "SelectionProvider",
    "SelectionRequest",
    "SymbolChoice",
    "UnusableAnswer",
    "ValidatedAnswer",
    "build_anthropic_provider",
    "build_groq_provider",
    "build_selection_request",
    "validate_answer",
]
