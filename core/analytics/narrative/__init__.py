"""Iteration narratives: an optional LLM summary that is only kept when every number in it comes from the facts.

The audit agent builds a ``facts`` mapping for each iteration and a deterministic text, :func:`summarize`. A
:class:`AnthropicNarrator` asks Claude for a short plain-English summary of the same facts, then checks it with
:func:`validate_narrative`; anything doubtful (an unknown number, an HTTP error, a timeout, an empty or truncated
answer) falls back to the template text, and the rejected narrative and the reason are kept in the
:class:`NarrativeResult` so they can be recorded. A :class:`TemplateNarrator` has the same interface for a daemon
without an API key.

The package is split along the steps of that check:

* :mod:`core.analytics.narrative.tokens` - :func:`extract_tokens`: the numbers, dates and times a text claims (token rules);
* :mod:`core.analytics.narrative.facts` - :func:`index_facts` / :func:`validate_narrative`: what the facts hold and the
  tolerance rule that decides whether a narrative is faithful;
* :mod:`core.analytics.narrative.template` - :func:`summarize`: the deterministic text, the template every narrator
  falls back to;
* :mod:`core.analytics.narrative.narrators` - :class:`TemplateNarrator`, :class:`AnthropicNarrator` and
  :func:`build_anthropic_narrator`.
"""

from __future__ import annotations

from core.analytics.narrative.facts import FactIndex, NarrativeCheck, fact_numbers, index_facts, validate_narrative
from core.analytics.narrative.narrators import (
    SYSTEM_PROMPT,
    AnthropicNarrator,
    NarrativeCall,
    NarrativeOutcome,
    NarrativeResult,
    Narrator,
    Template,
    TemplateNarrator,
    build_anthropic_narrator,
    facts_prompt,
)
from core.analytics.narrative.template import summarize
from core.analytics.narrative.tokens import DateToken, NumberToken, TimeToken, Token, extract_numbers, extract_tokens

__all__ = [
    "SYSTEM_PROMPT",
    "AnthropicNarrator",
    "DateToken",
    "FactIndex",
    "NarrativeCall",
    "NarrativeCheck",
    "NarrativeOutcome",
    "NarrativeResult",
    "Narrator",
    "NumberToken",
    "Template",
    "TemplateNarrator",
    "TimeToken",
    "Token",
    "build_anthropic_narrator",
    "extract_numbers",
    "extract_tokens",
    "fact_numbers",
    "facts_prompt",
    "index_facts",
    "summarize",
    "validate_narrative",
]
