"""Iteration narratives: an optional LLM summary that is only kept when every figure in it is a named fact.

The audit agent builds a ``facts`` mapping for each iteration and a deterministic ``template(facts)`` text. A
:class:`AnthropicNarrator` asks Claude for a short plain-English summary of the same facts, written with
``{name}`` references to named facts, then checks and renders it with :func:`bind_narrative`; anything doubtful
(a figure not bound to a fact, a reference next to the wrong words, an HTTP error, a timeout, an empty or truncated
answer) falls back to the template text, and the rejected narrative and the reason are kept in the
:class:`NarrativeResult` so they can be recorded. A :class:`TemplateNarrator` has the same interface for a daemon
without an API key.

The package is split along the steps of that check:

* :mod:`core.analytics.narrative.tokens` - :func:`extract_tokens`: the numbers, dates and times a text claims (token rules);
* :mod:`core.analytics.narrative.facts` - :func:`index_facts` / :func:`validate_narrative`: what the facts hold and the
  tolerance rule that decides whether a narrative is faithful;
* :mod:`core.analytics.narrative.template` - :func:`summarize`: the deterministic text, the template every narrator
  falls back to;
* :mod:`core.analytics.narrative.binding` - :func:`bind_narrative`: the model writes ``{name}`` references to
  named facts, the code renders them; a figure the model wrote itself, or a reference next to the wrong words,
  rejects the narrative (this is the check the narrator applies);
* :mod:`core.analytics.narrative.content` - :func:`iteration_content`: the iteration's real content (orders,
  fills, P&L, exposure, risk state) added to the facts;
* :mod:`core.analytics.narrative.narrators` - :class:`TemplateNarrator`, :class:`AnthropicNarrator` and
  :func:`build_anthropic_narrator`.
"""

from __future__ import annotations

from core.analytics.narrative.binding import BoundNarrative, bind_narrative, named_figures
from core.analytics.narrative.content import iteration_content
from core.analytics.narrative.facts import FactIndex, NarrativeCheck, fact_numbers, index_facts, validate_narrative
from core.analytics.narrative.narrators import (
    NARRATIVE_PROMPT_VERSION,
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
    "NARRATIVE_PROMPT_VERSION",
    "SYSTEM_PROMPT",
    "BoundNarrative",
    "bind_narrative",
    "iteration_content",
    "named_figures",
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
