"""The sector/theme map used for the sector cap.

``config/sectors.json`` holds a default map of common US symbols to a bucket (GICS-like sector names in snake_case;
broad index ETFs such as SPY/IWM/QQQ are their own ``broad_market`` bucket; bond and commodity ETFs are
``fixed_income`` and ``commodities``). Loading it is I/O, so it happens once at start-up (the composition root); the
engine itself only sees the bucket name on ``Candidate.sector`` / ``PositionView.sector``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType
from collections.abc import Mapping

from core.errors import ConfigurationError
from core.risk.models import UNKNOWN_BUCKET, normalise_bucket

DEFAULT_SECTOR_MAP_PATH = Path(__file__).resolve().parents[2] / "config" / "sectors.json"


class SectorMapError(ConfigurationError, ValueError):
    """The sector map file is malformed (message names the file and the problem)."""


def parse_sector_map(document: object, source: str = "<sector map>") -> Mapping[str, str]:
    """Validate a decoded sectors document ``{"sectors": {"AAPL": "technology", ...}}`` into a read-only map
    (symbols upper-case, buckets normalised)."""
    if not isinstance(document, dict) or not isinstance(document.get("sectors"), dict):
        raise SectorMapError(f"{source}: expected an object with a 'sectors' object mapping symbol -> bucket")
    result: dict[str, str] = {}
    for symbol, bucket in document["sectors"].items():
        if not isinstance(symbol, str) or not symbol.strip():
            raise SectorMapError(f"{source}: invalid symbol {symbol!r}")
        if not isinstance(bucket, str) or not bucket.strip():
            raise SectorMapError(f"{source}: symbol {symbol!r} has an invalid bucket {bucket!r}")
        result[symbol.strip().upper()] = normalise_bucket(bucket)
    return MappingProxyType(result)


def load_sector_map(path: Path | str = DEFAULT_SECTOR_MAP_PATH) -> Mapping[str, str]:
    """Read and validate a sectors JSON file (I/O: call at start-up, not inside the engine)."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        try:
            document = json.load(handle)
        except json.JSONDecodeError as exc:
            raise SectorMapError(f"{path}: invalid JSON: {exc}") from exc
    return parse_sector_map(document, str(path))


def sector_of(symbol: str, sector_map: Mapping[str, str], default: str = UNKNOWN_BUCKET) -> str:
    """The bucket of ``symbol`` (case-insensitive), or ``default`` when the map does not know it."""
    return sector_map.get(symbol.strip().upper(), normalise_bucket(default))
