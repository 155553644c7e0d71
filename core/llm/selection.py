"""LLM strategy selection over a closed set, with provider fallback, telemetry and a daily budget.

Design (see also the docstrings of :mod:`core.llm.validation` and :mod:`core.llm.providers`):

* Symbols are split into chunks of ``chunk_size`` (contexts order kept); chunks are sent one after the other, so
  the budget check before each call is exact and rate limits are not hammered.
* For each chunk the providers are tried in order (Groq first, Anthropic as fallback, by composition). The next
  provider is tried **only when the previous one's whole call failed**: HTTP error, rate limit, timeout, connection
  error, malformed body or JSON, missing tool call/content, Groq ``json_validate_failed``, or an answer that is not
  an object with a ``choices`` array, **or an answer in which not one symbol got a valid choice** (every entry
  names an unknown strategy, say): such a call is recorded with outcome ``invalid``, counts as a failure for the
  caller's circuit breaker and lets the next provider try. An answer with at least one valid choice is final for
  its chunk: symbols whose entries are invalid (unknown strategy, wrong types, missing, conflicting duplicates)
  abstain with a specific reason, and the caller's deterministic fallback handles them.
* ``blind=True`` (any decision about a past date: replays, backtests): the prompt names stable aliases instead of
  tickers and carries no calendar date (:mod:`core.llm.blinding`); answers are mapped back to the real symbols,
  and the call records name the real symbols with the hash of the blinded prompt that was sent.
* ``ranking``: providers are asked in the order of their measured success and latency
  (:class:`~core.llm.ranking.ProviderRanking`); without one, in the configured order.
* ``on_budget_switch``: called once, with the reason, the first time the budget stops a call (the caller prints
  it and records it with the run).
* Every provider attempt-group gives one :class:`LLMCallRecord`; a call refused by the budget gives a record with
  outcome ``budget_exceeded`` and no network traffic. Once the budget refuses, no further call is made this
  iteration.
* Nothing an LLM returns can make :meth:`LLMSelector.select` raise. It raises only for caller mistakes (bad
  arguments) and for exceptions nobody knows how to translate (bugs), which must not be swallowed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from core.kernel.domain import ensure_utc
from core.llm.blinding import Blinder
from core.llm.budget import DailyBudget
from core.llm.prompts import BLIND_PROMPT_VERSION, PROMPT_VERSION, SelectionRequest, build_selection_request
from core.llm.providers import ProviderCallError, SelectionProvider
from core.llm.ranking import ProviderRanking
from core.llm.telemetry import CallOutcome, LLMCallRecord, PriceTable
from core.llm.results import SelectionOutcome, SymbolChoice
from core.llm.validation import UnusableAnswer, validate_answer

MAX_REASON_PREFIX_CHARS = 80


class LLMSelector:
    """Composes selection providers with fallback. Stateless between calls except through ``budget``."""

    def __init__(
        self,
        providers: Sequence[SelectionProvider],
        *,
        budget: DailyBudget,
        prices: PriceTable,
        chunk_size: int = 40,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        blind: bool = False,
        ranking: ProviderRanking | None = None,
        on_budget_switch: Callable[[str], None] | None = None,
    ) -> None:
        if not providers:
            raise ValueError("LLMSelector needs at least one provider")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        self._providers = tuple(providers)
        self._budget = budget
        self._prices = prices
        self._chunk_size = chunk_size
        self._clock = clock
        self._monotonic = monotonic
        self._blinder = Blinder() if blind else None
        self._ranking = ranking
        self._on_budget_switch = on_budget_switch
        self._budget_switched = False

    @property
    def providers(self) -> tuple[SelectionProvider, ...]:
        return self._providers

    @property
    def blind(self) -> bool:
        return self._blinder is not None

    @property
    def budget(self) -> DailyBudget:
        return self._budget

    def __repr__(self) -> str:
        names = ", ".join(f"{p.name}/{p.model}" for p in self._providers)
        version = BLIND_PROMPT_VERSION if self.blind else PROMPT_VERSION
        return f"LLMSelector(providers=[{names}], chunk_size={self._chunk_size}, prompt={version})"

    async def aclose(self) -> None:
        for provider in self._providers:
            await provider.aclose()

    async def select(
        self,
        contexts: Mapping[str, Mapping[str, float | str]],
        allowed: Sequence[str],
        descriptions: Mapping[str, str],
    ) -> SelectionOutcome:
        allowed_names = _check_arguments(contexts, allowed, descriptions)
        symbols = list(contexts)
        choices: dict[str, SymbolChoice] = {}
        records: list[LLMCallRecord] = []
        budget_refusal: str | None = None

        blinder = self._blinder
        sent: dict[str, str] = {s: s for s in symbols}  # symbol → the name the prompt uses for it
        if blinder is not None:
            sent = blinder.aliases(symbols)
            real = {alias: symbol for symbol, alias in sent.items()}
            prompt_contexts = {sent[s]: blinder.context(s, contexts[s], symbols) for s in symbols}
        else:
            real = sent
            prompt_contexts = {s: dict(contexts[s]) for s in symbols}
        version = BLIND_PROMPT_VERSION if blinder is not None else PROMPT_VERSION
        names = [sent[s] for s in symbols]
        for start in range(0, len(names), self._chunk_size):
            chunk = names[start : start + self._chunk_size]
            request = build_selection_request(
                {s: prompt_contexts[s] for s in chunk}, allowed_names, descriptions, version=version
            )
            if budget_refusal is None:
                budget_refusal = await self._run_chunk(request, choices, records)
            else:
                self._refuse_chunk(request, budget_refusal, choices, records)

        if blinder is not None:
            choices = {real[a]: _unblind_choice(c, real[a], blinder) for a, c in choices.items()}
            records = [_unblind_record(r, real, blinder) for r in records]
        ordered = {symbol: choices[symbol] for symbol in symbols}
        return SelectionOutcome(ordered, tuple(records))

    def _budget_refused(self, refusal: str) -> None:
        if not self._budget_switched:
            self._budget_switched = True
            if self._on_budget_switch is not None:
                self._on_budget_switch(refusal)

    # ------------------------------------------------------------------------------------------------------------

    async def _run_chunk(
        self, request: SelectionRequest, choices: dict[str, SymbolChoice], records: list[LLMCallRecord]
    ) -> str | None:
        """Try the providers in order for one chunk. Returns the budget refusal, if the budget stopped us."""
        failures: list[str] = []
        providers = self._providers
        if self._ranking is not None:
            providers = tuple(self._ranking.order(providers, lambda p: (p.name, p.model)))
        for provider in providers:
            refusal = self._budget.exceeded_reason()
            if refusal is not None:
                self._budget_refused(refusal)
                records.append(self._budget_record(provider, request, refusal))
                reason = refusal if not failures else f"{refusal}; after: {'; '.join(failures)}"
                for symbol in request.symbols:
                    choices[symbol] = SymbolChoice.abstain(symbol, reason)
                return refusal
            label = f"{provider.name}/{provider.model}"[:MAX_REASON_PREFIX_CHARS]
            started_at = ensure_utc(self._clock(), "selector clock")
            t0 = self._monotonic()
            try:
                reply = await provider.complete(request)
            except ProviderCallError as exc:
                latency_ms = (self._monotonic() - t0) * 1000.0
                record = self._record(
                    provider,
                    request,
                    started_at,
                    latency_ms,
                    outcome=exc.outcome,
                    input_tokens=exc.input_tokens,
                    output_tokens=exc.output_tokens,
                    retries=exc.retries,
                    error=exc.message,
                )
                records.append(record)
                failures.append(f"{label}: {exc.outcome.value}: {exc.message}")
                continue
            latency_ms = (self._monotonic() - t0) * 1000.0
            try:
                answer = validate_answer(reply.payload, asked=request.symbols, allowed=request.allowed)
            except UnusableAnswer as exc:
                records.append(
                    self._record(
                        provider,
                        request,
                        started_at,
                        latency_ms,
                        outcome=CallOutcome.INVALID,
                        input_tokens=reply.input_tokens,
                        output_tokens=reply.output_tokens,
                        retries=reply.retries,
                        error=str(exc),
                    )
                )
                failures.append(f"{label}: invalid: {exc}")
                continue
            if answer.valid_count == 0:  # a well-formed answer without one usable choice is a failed call
                problem = "no valid choice in the answer"
                if answer.errors:
                    problem += f" ({answer.errors[0]})"
                records.append(
                    self._record(
                        provider,
                        request,
                        started_at,
                        latency_ms,
                        outcome=CallOutcome.INVALID,
                        input_tokens=reply.input_tokens,
                        output_tokens=reply.output_tokens,
                        retries=reply.retries,
                        error=problem,
                        validation_errors=answer.errors,
                    )
                )
                failures.append(f"{label}: invalid: {problem}")
                continue
            outcome = CallOutcome.OK if answer.valid_count == len(request.symbols) else CallOutcome.PARTIAL
            records.append(
                self._record(
                    provider,
                    request,
                    started_at,
                    latency_ms,
                    outcome=outcome,
                    input_tokens=reply.input_tokens,
                    output_tokens=reply.output_tokens,
                    retries=reply.retries,
                    validation_errors=answer.errors,
                )
            )
            for symbol, choice in answer.choices.items():
                choices[symbol] = SymbolChoice(
                    symbol=symbol,
                    strategy=choice.strategy,
                    abstained=choice.abstained,
                    reason=f"{label}: {choice.reason}",
                )
            return None

        reason = "no valid LLM answer: " + "; ".join(failures)
        for symbol in request.symbols:
            choices[symbol] = SymbolChoice.abstain(symbol, reason)
        return None

    def _refuse_chunk(
        self,
        request: SelectionRequest,
        refusal: str,
        choices: dict[str, SymbolChoice],
        records: list[LLMCallRecord],
    ) -> None:
        self._budget_refused(refusal)
        records.append(self._budget_record(self._providers[0], request, refusal))
        for symbol in request.symbols:
            choices[symbol] = SymbolChoice.abstain(symbol, refusal)

    def _budget_record(self, provider: SelectionProvider, request: SelectionRequest, refusal: str) -> LLMCallRecord:
        return LLMCallRecord(
            provider=provider.name,
            model=provider.model,
            prompt_version=request.prompt_version,
            prompt_hash=request.prompt_hash,
            input_tokens=0,
            output_tokens=0,
            cost_usd=Decimal(0),  # no call was made
            latency_ms=0.0,
            retries=0,
            outcome=CallOutcome.BUDGET_EXCEEDED,
            validation_errors=(),
            started_at=ensure_utc(self._clock(), "selector clock"),
            symbols=request.symbols,
            error=refusal,
        )

    def _record(
        self,
        provider: SelectionProvider,
        request: SelectionRequest,
        started_at: datetime,
        latency_ms: float,
        *,
        outcome: CallOutcome,
        input_tokens: int,
        output_tokens: int,
        retries: int,
        error: str | None = None,
        validation_errors: tuple[str, ...] = (),
    ) -> LLMCallRecord:
        cost = self._prices.cost(provider.name, provider.model, input_tokens, output_tokens)
        self._budget.record(cost)
        if self._ranking is not None:
            self._ranking.observe(provider.name, provider.model, outcome, latency_ms)
        return LLMCallRecord(
            provider=provider.name,
            model=provider.model,
            prompt_version=request.prompt_version,
            prompt_hash=request.prompt_hash,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost,
            latency_ms=round(max(latency_ms, 0.0), 3),
            retries=retries,
            outcome=outcome,
            validation_errors=validation_errors,
            started_at=started_at,
            symbols=request.symbols,
            error=error,
        )


def _unblind_choice(choice: SymbolChoice, symbol: str, blinder: Blinder) -> SymbolChoice:
    reason = blinder.unblind_text(choice.reason)
    if choice.abstained:
        return SymbolChoice.abstain(symbol, reason)
    assert choice.strategy is not None
    return SymbolChoice.chosen(symbol, choice.strategy, reason)


def _unblind_record(record: LLMCallRecord, real: Mapping[str, str], blinder: Blinder) -> LLMCallRecord:
    """The record names the real symbols (the ledger's view); its prompt hash stays that of the blinded prompt."""
    return replace(
        record,
        symbols=tuple(real.get(s, s) for s in record.symbols),
        validation_errors=tuple(blinder.unblind_text(e) for e in record.validation_errors),
        error=None if record.error is None else blinder.unblind_text(record.error),
    )


def _check_arguments(contexts: Any, allowed: Any, descriptions: Any) -> tuple[str, ...]:
    """Caller mistakes raise (they are bugs in our code, not LLM behaviour)."""
    if not isinstance(contexts, Mapping):
        raise TypeError("contexts must be a mapping symbol → context")
    for symbol, context in contexts.items():
        if not isinstance(symbol, str) or not symbol.strip():
            raise ValueError(f"symbols must be non-empty strings, got {symbol!r}")
        if not isinstance(context, Mapping):
            raise TypeError(f"context of {symbol} must be a mapping, got {type(context).__name__}")
    if isinstance(allowed, str) or not isinstance(allowed, Sequence):
        raise TypeError("allowed must be a sequence of strategy names")
    names: list[str] = []
    for name in allowed:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"allowed strategy names must be non-empty strings, got {name!r}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("allowed must name at least one strategy")
    if not isinstance(descriptions, Mapping):
        raise TypeError("descriptions must be a mapping name → description")
    return tuple(names)
