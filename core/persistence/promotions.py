"""Promoted configurations: the versioned strategy parameters ``main.py optimize --promote`` records and the daemon
reads at the start of each iteration (table ``promoted_configs``).

At most one version per strategy is the ``champion``; a promotion retires the previous champion (kept as
``previous_version`` of the new one) and a reversion marks the champion ``reverted`` and makes its previous version
the champion again (none: the configured parameters). Each status change is one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.persistence.models import EquitySnapshotRow, PromotedConfigRow, Run

__all__ = [
    "CHAMPION",
    "REVERTED",
    "RETIRED",
    "PromotedConfig",
    "active_versions",
    "daemon_equity_since",
    "promotion_key",
    "promotion_by_key",
    "promotions",
    "record_promotion",
    "revert_promotion",
]

CHAMPION, RETIRED, REVERTED = "champion", "retired", "reverted"


@dataclass(frozen=True)
class PromotedConfig:
    version: int
    strategy: str
    params: dict[str, Any]
    promoted_at: datetime
    source_study: str
    expectation: dict[str, Any]
    test: dict[str, Any]
    previous_version: int | None
    status: str
    reason: str
    changed_at: datetime

    @classmethod
    def of(cls, row: PromotedConfigRow) -> PromotedConfig:
        return cls(
            row.version, row.strategy, dict(row.params), row.promoted_at, row.source_study, dict(row.expectation),
            dict(row.test), row.previous_version, row.status, row.reason, row.changed_at,
        )  # fmt: skip


def promotion_key(strategy: str, source_study: str, params: Mapping[str, Any]) -> str:
    """The identity of a promotion: the same study promoting the same parameters is the same version."""
    text = json.dumps([strategy, source_study, dict(params)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def promotion_by_key(engine: Engine, key: str) -> PromotedConfig | None:
    with Session(engine) as session:
        row = session.scalars(select(PromotedConfigRow).where(PromotedConfigRow.source_key == key)).first()
        return PromotedConfig.of(row) if row is not None else None


def promotions(engine: Engine, strategy: str | None = None) -> list[PromotedConfig]:
    """Every version (of ``strategy``), oldest first."""
    query = select(PromotedConfigRow).order_by(PromotedConfigRow.version)
    if strategy is not None:
        query = query.where(PromotedConfigRow.strategy == strategy)
    with Session(engine) as session:
        return [PromotedConfig.of(row) for row in session.scalars(query)]


def active_versions(engine: Engine) -> dict[str, PromotedConfig]:
    """The champion of each strategy that has one."""
    query = select(PromotedConfigRow).where(PromotedConfigRow.status == CHAMPION).order_by(PromotedConfigRow.version)
    with Session(engine) as session:
        return {row.strategy: PromotedConfig.of(row) for row in session.scalars(query)}


def record_promotion(
    engine: Engine,
    *,
    strategy: str,
    params: Mapping[str, Any],
    source_study: str,
    expectation: Mapping[str, Any],
    test: Mapping[str, Any],
    at: datetime,
    reason: str,
) -> tuple[PromotedConfig, bool]:
    """Record ``params`` as the new champion of ``strategy`` and retire the current one; returns the version and
    whether it was created (``False``: this study already promoted these parameters, nothing changed)."""
    key = promotion_key(strategy, source_study, params)
    with Session(engine) as session, session.begin():
        existing = session.scalars(select(PromotedConfigRow).where(PromotedConfigRow.source_key == key)).first()
        if existing is not None:
            return PromotedConfig.of(existing), False
        current = session.scalars(
            select(PromotedConfigRow).where(
                PromotedConfigRow.strategy == strategy, PromotedConfigRow.status == CHAMPION
            )
        ).first()
        row = PromotedConfigRow(
            strategy=strategy,
            params=dict(params),
            promoted_at=at,
            source_study=source_study,
            source_key=key,
            expectation=dict(expectation),
            test=dict(test),
            previous_version=current.version if current is not None else None,
            status=CHAMPION,
            reason=reason,
            changed_at=at,
        )
        if current is not None:
            current.status = RETIRED
            current.changed_at = at
        session.add(row)
        session.flush()
        if current is not None:
            current.reason = f"{current.reason}; retired by version {row.version}"
        return PromotedConfig.of(row), True


def revert_promotion(engine: Engine, version: int, *, reason: str, at: datetime) -> PromotedConfig | None:
    """Mark champion ``version`` reverted and make its previous version the champion again; returns the reinstated
    version (``None``: the configured parameters). A version that is no longer the champion is left alone."""
    with Session(engine) as session, session.begin():
        row = session.get(PromotedConfigRow, version)
        if row is None or row.status != CHAMPION:
            return None
        row.status = REVERTED
        row.reason = f"{row.reason}; reverted: {reason}"
        row.changed_at = at
        previous = session.get(PromotedConfigRow, row.previous_version) if row.previous_version else None
        if previous is None:
            return None
        previous.status = CHAMPION
        previous.reason = f"{previous.reason}; champion again after version {version} was reverted"
        previous.changed_at = at
        session.flush()
        return PromotedConfig.of(previous)


def daemon_equity_since(engine: Engine, since: datetime) -> list[tuple[datetime, Decimal]]:
    """The equity snapshots of daemon runs taken at or after ``since``, oldest first."""
    query = (
        select(EquitySnapshotRow.at, EquitySnapshotRow.equity)
        .join(Run, Run.id == EquitySnapshotRow.run_id)
        .where(Run.kind == "daemon", EquitySnapshotRow.at >= since)
        .order_by(EquitySnapshotRow.at, EquitySnapshotRow.id)
    )
    with Session(engine) as session:
        return [(at, equity) for at, equity in session.execute(query)]
