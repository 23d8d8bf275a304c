"""On SQLite (the demo) the migrations leave the Logbook append-only too."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database that the real migrations built, as the demo's is."""
    database = tmp_path_factory.mktemp("sqlite") / "passport.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PASSPORT_ENV": "test"}
    subprocess.run([sys.executable, "manage.py", "migrate", "audit", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
    return database


def _insert(connection: sqlite3.Connection, n: int) -> int:
    cursor = connection.execute(
        "INSERT INTO audit_logbookentry"
        " (created_at, actor_label, action, account_id, instance_ids, detail, prev_hash, hash)"
        " VALUES ('2026-01-01 00:00:00', 'system', 'test.event', '', '', '{}', ?, ?)",
        ["0" * 64, f"{n:064x}"],
    )
    connection.commit()
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def test_update_and_delete_are_refused(migrated: Path) -> None:
    with sqlite3.connect(migrated) as connection:
        entry_id = _insert(connection, 1)
        with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE on audit_logbookentry is refused"):
            connection.execute("UPDATE audit_logbookentry SET action = 'request.rejected' WHERE id = ?", [entry_id])
        with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE on audit_logbookentry is refused"):
            connection.execute("DELETE FROM audit_logbookentry WHERE id = ?", [entry_id])
        with pytest.raises(sqlite3.IntegrityError, match="DELETE"):
            connection.execute("DELETE FROM audit_logbookentry")
        connection.rollback()
        assert connection.execute("SELECT action FROM audit_logbookentry WHERE id = ?", [entry_id]).fetchone() == (
            "test.event",
        )


def test_appending_still_works_and_a_row_without_a_key_is_legacy(migrated: Path) -> None:
    with sqlite3.connect(migrated) as connection:
        entry_id = _insert(connection, 2)
        assert connection.execute("SELECT key_id FROM audit_logbookentry WHERE id = ?", [entry_id]).fetchone() == (
            "legacy-sha256",
        )
