"""The market-data provider protocol and the normalised bars layout every provider returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable
from collections.abc import Mapping, Sequence

import pandas as pd
from core.errors import ExternalError


class DataError(ExternalError):
    """A provider could not produce usable bars; the message names the source and says why."""


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """Normalised frames by symbol plus a reason for every symbol the provider could not serve.

    Each frame: ``pd.DatetimeIndex`` named ``timestamp``, tz-aware UTC, normalised to midnight of the session date,
    strictly increasing; float64 columns ``open, high, low, close, volume``. A frame may extend beyond the requested
    ``end`` (file providers return everything they hold); consumers cut at the decision time.
    """

    frames: Mapping[str, pd.DataFrame]
    errors: Mapping[str, str] = field(default_factory=dict)
    provider: str = ""
    # symbols of ``errors`` the provider positively does not know (no file for it; no bar at all over the window),
    # as opposed to a failure to serve them this time: start-up refuses a universe naming one
    unknown: frozenset[str] = frozenset()


@runtime_checkable
class BarProvider(Protocol):
    name: str

    def history(self, symbols: Sequence[str], end: datetime, start: datetime | None = None) -> ProviderResult:
        """Daily bars for ``symbols`` up to at least ``end`` (UTC); unusable symbols go to ``errors``."""
        ...
