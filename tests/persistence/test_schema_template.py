"""A new SQLite database made from the schema template (built once per migration head and reused) has exactly the
schema, revision and settings that running every migration on an empty file gives."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from core.persistence import db
from core.persistence.db import MIGRATIONS_DIR, open_database, schema_key, schema_template


def _describe(path: Path) -> dict[str, object]:
    """Everything that makes up a database's schema, and its content."""
    con = sqlite3.connect(path)
    try:
        master = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        tables = [row[1] for row in master if row[0] == "table"]
        pragmas = {
            p: con.execute(f"PRAGMA {p}").fetchall()
            for p in ("journal_mode", "user_version", "application_id", "page_size", "auto_vacuum", "encoding")
        }
        rows = {t: con.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}
        columns = {t: con.execute(f"PRAGMA table_xinfo('{t}')").fetchall() for t in tables}
        indexes = {t: con.execute(f"PRAGMA index_list('{t}')").fetchall() for t in tables}
        keys = {t: con.execute(f"PRAGMA foreign_key_list('{t}')").fetchall() for t in tables}
    finally:
        con.close()
    return {"master": master, "pragmas": pragmas, "rows": rows, "columns": columns, "indexes": indexes, "keys": keys}


def test_new_database_when_made_from_the_template_then_its_schema_equals_the_migrated_one(tmp_path: Path) -> None:
    migrated, copied, cache = tmp_path / "migrated.db", tmp_path / "new" / "copied.db", tmp_path / "cache"
    open_database(f"sqlite:///{migrated}").dispose()
    open_database(f"sqlite:///{copied}", schema_cache=cache).dispose()

    templates = list(cache.glob("schema-sqlite-*.db"))
    assert [t.name for t in templates] == [f"schema-sqlite-{schema_key()}.db"]
    assert _describe(copied) == _describe(migrated)
    assert "alembic_version" in {row[1] for row in _describe(copied)["master"]}  # type: ignore[union-attr]
    assert not list(copied.parent.glob(".*"))  # no temporary copy left beside it


def test_schema_template_when_built_once_then_later_databases_reuse_it(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    first = schema_template(cache)
    assert first is not None
    built = first.stat().st_mtime_ns
    monkeypatch.setattr(db, "migrate", lambda engine: pytest.fail("the template was built again"))
    assert schema_template(cache) == first
    db._create_from_template(tmp_path / "again.db", cache)
    assert first.stat().st_mtime_ns == built
    assert (tmp_path / "again.db").read_bytes() == first.read_bytes()


def test_new_database_when_it_exists_already_then_the_template_is_not_copied_over_it(tmp_path: Path) -> None:
    path, cache = tmp_path / "kept.db", tmp_path / "cache"
    engine = open_database(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO daemon_state (key, value, updated_at) VALUES ('k', '{}', '2020-01-01')")
    engine.dispose()
    open_database(f"sqlite:///{path}", schema_cache=cache).dispose()
    assert not cache.exists()
    assert sqlite3.connect(path).execute("SELECT key FROM daemon_state").fetchall() == [("k",)]


def test_schema_key_when_a_migration_changes_then_the_key_changes(tmp_path: Path) -> None:
    tree = tmp_path / "persistence"
    shutil.copytree(MIGRATIONS_DIR, tree / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(MIGRATIONS_DIR.parent / "types.py", tree / "types.py")
    migrations = tree / "migrations"
    assert schema_key(migrations) == schema_key()

    last = sorted((migrations / "versions").glob("*.py"))[-1]
    last.write_text(last.read_text() + "\n# an edit\n")
    edited = schema_key(migrations)
    assert edited is not None and edited != schema_key()
    assert edited.split("-")[0] == schema_key().split("-")[0]  # type: ignore[union-attr]  # same head, other content

    (tree / "types.py").write_text((tree / "types.py").read_text() + "\n# an edit\n")
    assert schema_key(migrations) not in (edited, schema_key())

    (migrations / "versions" / "0099_next.py").write_text(
        'revision = "0099"\ndown_revision = "' + schema_key().split("-")[0] + '"\n'  # type: ignore[union-attr]
    )
    assert schema_key(migrations).split("-")[0] == "0099"  # type: ignore[union-attr]


def test_new_database_when_made_from_the_template_then_its_file_mode_is_sqlites(tmp_path: Path) -> None:
    import os
    import stat

    cache = tmp_path / "cache"
    open_database(f"sqlite:///{tmp_path / 'migrated.db'}").dispose()
    open_database(f"sqlite:///{tmp_path / 'copied.db'}", schema_cache=cache).dispose()
    modes = [stat.S_IMODE(os.stat(tmp_path / name).st_mode) for name in ("migrated.db", "copied.db")]
    assert modes[0] == modes[1]


def test_schema_template_when_the_migrations_fail_then_nothing_is_left_and_the_database_migrates(
    tmp_path: Path, monkeypatch
) -> None:
    cache = tmp_path / "cache"

    def broken(engine: object) -> None:
        raise db.DatabaseUnavailable("migration failed")

    monkeypatch.setattr(db, "migrate", broken)
    db._create_from_template(tmp_path / "new.db", cache)
    assert not (tmp_path / "new.db").exists()
    assert list(cache.iterdir()) == []
    monkeypatch.undo()
    open_database(f"sqlite:///{tmp_path / 'new.db'}", schema_cache=cache).dispose()
    assert _describe(tmp_path / "new.db")["master"]
