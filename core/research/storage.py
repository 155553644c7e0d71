"""Where a study lives: Optuna's RDB storage next to the project's database, never inside its tables.

Optuna creates its own tables, among them an ``alembic_version`` table that would collide with the project's own
migration table. So:

* **PostgreSQL**: Optuna's tables live in their own schema (:data:`OPTUNA_SCHEMA`, created when missing) of the
  same database, reached with ``search_path`` set to that schema on every connection. Several machines pointing at
  the same database share the study (Optuna's distributed mode); the project's ``public`` tables are not touched.
* **SQLite file** ``trading.db``: a sibling file ``trading.db.optuna.sqlite``; processes on one machine share it.
* **In-memory SQLite**: a temporary file for the lifetime of the command (processes can share it, nobody else).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from core.persistence.db import is_in_memory, normalise_url, safe_url, sqlite_file

__all__ = ["OPTUNA_SCHEMA", "StorageSpec", "open_storage", "storage_spec"]

OPTUNA_SCHEMA = "optuna"
SQLITE_SUFFIX = ".optuna.sqlite"
SQLITE_TIMEOUT_S = 60  # several local processes write one SQLite study file: wait for the lock, do not fail
_OPEN_ATTEMPTS = 5  # workers started together may race to create the schema or Optuna's tables


class StorageSpec:
    """The URL and engine options of Optuna's storage for one project database (picklable, no connection)."""

    def __init__(self, url: str, engine_kwargs: dict[str, Any], schema: str | None, shown: str) -> None:
        self.url = url
        self.engine_kwargs = engine_kwargs
        self.schema = schema
        self.shown = shown  # for messages: no password

    def __repr__(self) -> str:
        return f"StorageSpec({self.shown})"


def storage_spec(database_url: str, *, scratch_dir: Path | None = None) -> StorageSpec:
    """Optuna's storage for the project database ``database_url`` (see the module docstring)."""
    parsed = normalise_url(database_url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        options = f"-csearch_path={OPTUNA_SCHEMA}"
        kwargs = {"connect_args": {"options": options}, "pool_pre_ping": True}
        return StorageSpec(
            parsed.render_as_string(hide_password=False),
            kwargs,
            OPTUNA_SCHEMA,
            f"{safe_url(parsed)} (schema {OPTUNA_SCHEMA})",
        )
    if backend == "sqlite":
        if is_in_memory(parsed):
            if scratch_dir is None:
                raise ValueError("an in-memory project database needs a scratch directory for the study")
            path = scratch_dir / f"study{SQLITE_SUFFIX}"
        else:
            found = sqlite_file(parsed)
            if found is None:
                raise ValueError(f"cannot place a study next to {safe_url(parsed)}")
            path = found.with_name(found.name + SQLITE_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        return StorageSpec(
            f"sqlite:///{path.resolve()}", {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}, None, str(path)
        )
    raise ValueError(f"studies need SQLite or PostgreSQL, not {backend} ({safe_url(parsed)})")


def _create_schema(spec: StorageSpec) -> None:
    engine = create_engine(spec.url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{spec.schema}"'))
    finally:
        engine.dispose()


def open_storage(spec: StorageSpec, **options: Any) -> Any:
    """Optuna's ``RDBStorage`` for ``spec`` (the PostgreSQL schema created first); retried a few times because
    workers started together race to create the schema and the tables. ``options``: more ``RDBStorage`` arguments
    (heartbeats)."""
    import optuna

    last: Exception | None = None
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            if spec.schema is not None:
                _create_schema(spec)
            with warnings.catch_warnings():  # heartbeats are marked experimental by Optuna; they are what we need
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(spec.url, engine_kwargs=spec.engine_kwargs, **options)
        except (DBAPIError, optuna.exceptions.StorageInternalError) as exc:  # a concurrent CREATE won the race
            last = exc
            time.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"cannot open the study storage {spec.shown}: {last}") from last
