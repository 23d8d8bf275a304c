"""The Logbook becomes append-only in the database, and gets the indexes its filters use.

On PostgreSQL a trigger refuses UPDATE, DELETE and TRUNCATE on audit_logbookentry, and
pg_trgm GIN indexes serve the instance containment test and the text search. Other
databases (SQLite for the demo) get only the portable index: the filters still work
there, by scanning.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models, transaction

TABLE = "audit_logbookentry"

# Kept identical to what audit.selectors._SearchText compiles to, so the planner matches the index.
SEARCH_EXPRESSION = "(action || ' ' || actor_label || ' ' || detail::text)"

REFUSE_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_logbook_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Emptying a whole scratch or test database (Django's flush) is the one exception,
    -- and only for a session that asks for it by name.
    IF TG_OP = 'TRUNCATE' AND current_setting('passport.logbook_truncate', true) = 'allow' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'The Logbook is append-only: % on % is refused.', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation',
              HINT = 'Logbook entries are never changed or removed; record a correction as a new entry. '
                     'To empty a scratch or test database: SET passport.logbook_truncate = ''allow''.';
END
$$;
"""

FORWARD_SQL = [
    REFUSE_FUNCTION,
    f"""CREATE TRIGGER audit_logbook_append_only
        BEFORE UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION audit_logbook_refuse_change();""",
    f"""CREATE TRIGGER audit_logbook_no_truncate
        BEFORE TRUNCATE ON {TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION audit_logbook_refuse_change();""",
]

TRIGRAM_SQL = [
    f"CREATE INDEX IF NOT EXISTS logbook_instances_trgm ON {TABLE} USING gin (instance_ids gin_trgm_ops);",
    f"CREATE INDEX IF NOT EXISTS logbook_search_trgm ON {TABLE} USING gin ({SEARCH_EXPRESSION} gin_trgm_ops);",
]

BACKWARD_SQL = [
    "DROP INDEX IF EXISTS logbook_search_trgm;",
    "DROP INDEX IF EXISTS logbook_instances_trgm;",
    f"DROP TRIGGER IF EXISTS audit_logbook_no_truncate ON {TABLE};",
    f"DROP TRIGGER IF EXISTS audit_logbook_append_only ON {TABLE};",
    "DROP FUNCTION IF EXISTS audit_logbook_refuse_change();",
]


def _have_trigram(schema_editor: Any) -> bool:
    """Make sure pg_trgm is there; without the right to create it, carry on without it."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone():
            return True
        try:
            with transaction.atomic(using=connection.alias):
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except Exception as error:  # noqa: BLE001 - any refusal means "no trigram indexes"
            print(f"\n  pg_trgm unavailable ({error}); the instance and text filters will scan instead.")
            return False
    return True


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    statements = list(FORWARD_SQL)
    if _have_trigram(schema_editor):
        statements += TRIGRAM_SQL
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for statement in BACKWARD_SQL:
            cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="logbookentry",
            index=models.Index(fields=["actor_label", "id"], name="logbook_actor_label"),
        ),
        migrations.RunPython(forwards, backwards),
    ]
