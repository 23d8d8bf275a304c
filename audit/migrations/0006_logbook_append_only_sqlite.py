"""On SQLite (the demo), the Logbook becomes append-only too: triggers refuse UPDATE and DELETE.

PostgreSQL has had its trigger since 0002. SQLite has no TRUNCATE, and its triggers live
with the table: a later migration that makes Django rebuild ``audit_logbookentry`` on SQLite
(most column changes do) drops them, so such a migration must run ``FORWARD_SQL`` again.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TABLE = "audit_logbookentry"
MESSAGE = "The Logbook is append-only: {op} on audit_logbookentry is refused. Record a correction as a new entry."

FORWARD_SQL = [
    f"""CREATE TRIGGER IF NOT EXISTS audit_logbook_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, '{MESSAGE.format(op="UPDATE")}'); END;""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_logbook_no_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, '{MESSAGE.format(op="DELETE")}'); END;""",
]
BACKWARD_SQL = [
    "DROP TRIGGER IF EXISTS audit_logbook_no_delete;",
    "DROP TRIGGER IF EXISTS audit_logbook_no_update;",
]


def _run(schema_editor: Any, statements: list[str]) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def forwards(apps: Any, schema_editor: Any) -> None:
    _run(schema_editor, FORWARD_SQL)


def backwards(apps: Any, schema_editor: Any) -> None:
    _run(schema_editor, BACKWARD_SQL)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0005_logbook_keys_and_checkpoints"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
