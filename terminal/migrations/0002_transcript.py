"""Recordings become searchable: their plain text is stored beside them.

On PostgreSQL, pg_trgm GIN indexes serve the case-insensitive substring search (ILIKE) of
terminal.selectors; without pg_trgm, or on SQLite, the same search scans. Recordings sealed
before this migration get their text here from the files still on disk; the management
command ``terminal_transcripts`` does the same later (for example after restoring files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import migrations, models, transaction

TABLE = "terminal_terminalsession"

TRIGRAM_SQL = [
    f"CREATE INDEX IF NOT EXISTS terminal_transcript_trgm ON {TABLE} USING gin (transcript gin_trgm_ops);",
    f"CREATE INDEX IF NOT EXISTS terminal_transcript_input_trgm ON {TABLE} USING gin (transcript_input gin_trgm_ops);",
]
BACKWARD_SQL = [
    "DROP INDEX IF EXISTS terminal_transcript_input_trgm;",
    "DROP INDEX IF EXISTS terminal_transcript_trgm;",
]


def _have_trigram(schema_editor: Any) -> bool:
    """pg_trgm, created if missing and allowed; without it the search scans."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone():
            return True
        try:
            with transaction.atomic(using=connection.alias):
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except Exception as error:  # noqa: BLE001 - any refusal means "no trigram indexes"
            print(f"\n  pg_trgm unavailable ({error}); recording search will scan instead.")
            return False
    return True


def indexes_forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql" or not _have_trigram(schema_editor):
        return
    with schema_editor.connection.cursor() as cursor:
        for statement in TRIGRAM_SQL:
            cursor.execute(statement)


def indexes_backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for statement in BACKWARD_SQL:
            cursor.execute(statement)


def fill_transcripts(apps: Any, schema_editor: Any) -> None:
    from terminal.transcript import transcript_from_file

    terminal_session = apps.get_model("terminal", "TerminalSession")
    media = Path(settings.MEDIA_ROOT)
    sealed = terminal_session.objects.filter(ended_at__isnull=False, transcript="", transcript_input="")
    for session in sealed.exclude(recording_path="").iterator():
        path = media / session.recording_path
        if not path.is_file():
            continue
        transcript = transcript_from_file(path)
        terminal_session.objects.filter(pk=session.pk).update(
            transcript=transcript.output, transcript_input=transcript.input, transcript_index=transcript.index
        )


class Migration(migrations.Migration):
    dependencies = [
        ("terminal", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="terminalsession",
            name="transcript",
            field=models.TextField(blank=True, help_text="What the terminal printed, escape sequences removed."),
        ),
        migrations.AddField(
            model_name="terminalsession",
            name="transcript_index",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="terminalsession",
            name="transcript_input",
            field=models.TextField(blank=True, help_text="What was typed, escape sequences removed."),
        ),
        migrations.RunPython(indexes_forwards, indexes_backwards),
        migrations.RunPython(fill_transcripts, migrations.RunPython.noop),
    ]
