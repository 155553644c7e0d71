"""Opening a database already at the head revision does not run Alembic; one behind is still migrated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from core.persistence.db import _alembic_config, head_revision, open_database

REPO_ROOT = Path(__file__).resolve().parents[2]

_OPEN_WITHOUT_ALEMBIC = """
import sys
sys.path.insert(0, {root!r})
from alembic import command
def refuse(*args, **kwargs):
    raise AssertionError("Alembic ran on a database already at head")
command.upgrade = refuse
from core.persistence.db import open_database
open_database({url!r}, create=False).dispose()
print("opened")
"""


def _version(url: str) -> list[str]:
    engine = open_database(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def test_head_revision_is_the_last_migration() -> None:
    versions = sorted(p.name for p in (REPO_ROOT / "core/persistence/migrations/versions").glob("0*.py"))
    assert head_revision() == versions[-1].split("_")[0]


def test_a_database_at_head_is_opened_without_running_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'at_head.db'}"
    assert _version(url) == [head_revision()]  # created and migrated
    code = _OPEN_WITHOUT_ALEMBIC.format(root=str(REPO_ROOT), url=url)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("opened")


def test_a_database_one_revision_behind_is_still_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    engine = open_database(url)
    with engine.begin() as connection:  # back to the revision before head, with Alembic's own downgrade
        cfg = _alembic_config()
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "-1")
    engine.dispose()
    behind = _version(url.replace("behind.db", "behind-copy.db"))  # a fresh database is at head: the control
    assert behind == [head_revision()]
    engine = create_engine(url)
    with engine.connect() as connection:
        recorded = list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    engine.dispose()
    assert recorded != [head_revision()]  # really one behind
    assert _version(url) == [head_revision()]  # opening it migrates to head
