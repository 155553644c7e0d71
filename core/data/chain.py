"""A provider that falls back, symbol by symbol, through a list of providers (e.g. Alpaca -> disk cache -> files).

The first provider is asked for every symbol; each following provider only for the symbols all earlier ones failed
to serve. The result is a :class:`ChainResult`: a :class:`ProviderResult` (so it satisfies the ``BarProvider``
contract unchanged) that also says which provider served each symbol and why the earlier ones did not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from core.data.base import BarProvider, DataError, ProviderResult


@dataclass(frozen=True, slots=True)
class ChainResult(ProviderResult):
    """``served_by``: provider name per served symbol. ``fallbacks``: for a symbol served by a later provider, the
    reasons the earlier providers gave (``"alpaca: timeout"``), so a degraded source is visible in the audit trail.
    ``errors`` holds, for symbols nobody served, every provider's reason joined with ``"; "``."""

    served_by: Mapping[str, str] = field(default_factory=dict)
    fallbacks: Mapping[str, str] = field(default_factory=dict)


class FallbackChain:
    """:class:`core.data.base.BarProvider` asking ``providers`` in order, each only for the symbols still unserved.

    A provider that raises :class:`DataError` (its source is unavailable as a whole) counts as failing every symbol
    it was asked for, with that message; any other exception propagates.
    """

    def __init__(self, providers: Sequence[BarProvider], name: str = "chain") -> None:
        if not providers:
            raise ValueError("FallbackChain needs at least one provider")
        names = [p.name for p in providers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"FallbackChain: provider names must be unique to record served_by; repeated: {duplicates}"
            )
        self.providers = tuple(providers)
        self.name = name

    def history(self, symbols: Sequence[str], end: datetime, start: datetime | None = None) -> ChainResult:
        pending = list(dict.fromkeys(symbols))
        frames: dict[str, pd.DataFrame] = {}
        served_by: dict[str, str] = {}
        reasons: dict[str, list[str]] = {}
        known: set[str] = set()  # symbols some provider failed for another reason than not knowing them
        for provider in self.providers:
            if not pending:
                break
            try:
                result = provider.history(pending, end, start)
                provider_errors: Mapping[str, str] = result.errors
                provided: Mapping[str, pd.DataFrame] = result.frames
                unknown_here: frozenset[str] = getattr(result, "unknown", frozenset())
            except DataError as exc:
                provider_errors, provided, unknown_here = {symbol: str(exc) for symbol in pending}, {}, frozenset()
            still_pending: list[str] = []
            for symbol in pending:
                frame = provided.get(symbol)
                if frame is not None:
                    frames[symbol] = frame
                    served_by[symbol] = provider.name
                    continue
                if symbol not in unknown_here:
                    known.add(symbol)
                reason = provider_errors.get(symbol, "returned neither bars nor an error")
                reasons.setdefault(symbol, []).append(_prefixed(provider.name, reason))
                still_pending.append(symbol)
            pending = still_pending
        errors = {symbol: "; ".join(reasons[symbol]) for symbol in pending}
        fallbacks = {symbol: "; ".join(reasons[symbol]) for symbol in served_by if symbol in reasons}
        return ChainResult(
            frames=frames,
            errors=errors,
            provider=self.name,
            unknown=frozenset(s for s in errors if s not in known),
            served_by=served_by,
            fallbacks=fallbacks,
        )


def _prefixed(provider: str, reason: str) -> str:
    """Name the provider once: providers in this package already start their messages with their name."""
    return reason if reason.startswith(f"{provider}:") else f"{provider}: {reason}"
