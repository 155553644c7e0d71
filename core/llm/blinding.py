"""Blinded selection prompts: no ticker and no calendar date reaches a model deciding about a past date.

On a past date (a replay, a backtest, any run not on live data) a model that sees ``AAPL`` and ``2020-03-16`` may
remember what came next. A :class:`Blinder` replaces every symbol with a stable alias (``A001``, ``A002``, ... in
order of first appearance in the run, so an alias means the same symbol for the whole run) and drops every
calendar date from the market context: keys that name a date or time (``as_of``, ``date``, ``timestamp``...) and
string values that contain one. Numbers are sent unchanged. The model's answer names aliases; :meth:`Blinder.symbol`
maps them back, and :meth:`Blinder.unblind_text` writes the real symbols into the reasons that are recorded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

ALIAS_PREFIX = "A"
_DATE_KEY = re.compile(r"(?:^|_)(?:as_of|date|day|time|timestamp|session|asof|when|at)(?:_|$)", re.IGNORECASE)
_DATE_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}|\b(?:19|20)\d{2}\b"
    r"|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?\s+\d{1,2}\b",
    re.IGNORECASE,
)


class Blinder:
    """Stable symbol aliases for one run, and date-free copies of the market contexts."""

    def __init__(self) -> None:
        self._alias: dict[str, str] = {}
        self._symbol: dict[str, str] = {}

    def alias(self, symbol: str) -> str:
        found = self._alias.get(symbol)
        if found is None:
            found = f"{ALIAS_PREFIX}{len(self._alias) + 1:03d}"
            self._alias[symbol] = found
            self._symbol[found] = symbol
        return found

    def aliases(self, symbols: Iterable[str]) -> dict[str, str]:
        """symbol → alias (assigning new aliases in the given order)."""
        return {symbol: self.alias(symbol) for symbol in symbols}

    def symbol(self, alias: str) -> str:
        return self._symbol[alias]

    def context(self, symbol: str, context: Mapping[str, Any], known: Iterable[str] = ()) -> dict[str, Any]:
        """``context`` without its dates and without any symbol named in a text value (numbers unchanged)."""
        names = {symbol, *known}
        blinded: dict[str, Any] = {}
        for key, value in context.items():
            if not isinstance(key, str) or key == "symbol" or _DATE_KEY.search(key):
                continue
            if isinstance(value, str):
                if _DATE_TEXT.search(value) or any(_mentions(value, name) for name in names):
                    continue
            blinded[key] = value
        return blinded

    def unblind_text(self, text: str) -> str:
        """Write the real symbols back into a model's reason (``A003`` → ``MSFT``)."""
        if not self._symbol:
            return text
        return re.sub(rf"\b{ALIAS_PREFIX}\d{{3,}}\b", lambda m: self._symbol.get(m.group(0), m.group(0)), text)

    def __len__(self) -> int:
        return len(self._alias)


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", text) is not None
