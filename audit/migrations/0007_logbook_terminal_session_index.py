"""An index for finding a terminal session's ``terminal.ended`` entry by the session's id alone.

The recording page looks the sealing entry up by the id in its detail, not by the request the
session row names today (a row an insider could point elsewhere); without this index that is a
walk over every ``terminal.ended`` entry. PostgreSQL only: the demo's SQLite Logbook is small.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TABLE = "audit_logbookentry"

# Kept identical to what audit.selectors.logbook_entry_first asks for (action = 'terminal.ended'
# and detail -> 'terminal_session' = …) so the planner matches the index.
FORWARD_SQL = [
    f"CREATE INDEX IF NOT EXISTS logbook_terminal_session ON {TABLE} "
    "(((detail -> 'terminal_session')), id) WHERE action = 'terminal.ended'",
    f"ANALYZE {TABLE}",
]
BACKWARD_SQL = ["DROP INDEX IF EXISTS logbook_terminal_session"]


def _run(schema_editor: Any, statements: list[str]) -> None:
    if schema_editor.connection.vendor != "postgresql":
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
        ("audit", "0006_logbook_append_only_sqlite"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
