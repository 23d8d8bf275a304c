"""Keyed Logbook hashes and the checkpoint tables.

The upgrade path: every entry already written gets key id "legacy-sha256" (a column default,
no UPDATE, so the append-only trigger is never involved) and stays verifiable as the plain
SHA-256 it was written with; every entry from now on is an HMAC under the Logbook key. The
migration prints the last legacy entry's id: set PASSPORT_LOGBOOK_LEGACY_UNTIL to it, so
verify_logbook refuses the unkeyed scheme on any later entry even before a checkpoint.

Going back is refused once an entry was hashed under a Logbook key: the key id would be dropped,
and applying this again would label that entry legacy-sha256, so its HMAC would read as an edited
entry and the chain would never verify again.
"""

from typing import Any

from django.db import migrations, models
from django.db.migrations.exceptions import IrreversibleError

LEGACY_KEY_ID = "legacy-sha256"


def _say_where_legacy_ends(apps: Any, schema_editor: Any) -> None:
    last = apps.get_model("audit", "LogbookEntry").objects.order_by("-id").values_list("id", flat=True).first()
    if last is not None:
        print(
            f"\n  Logbook entries up to #{last} keep their legacy-sha256 hashes: "
            f"set PASSPORT_LOGBOOK_LEGACY_UNTIL={last}."
        )


def _refuse_to_forget_keyed_entries(apps: Any, schema_editor: Any) -> None:
    keyed = apps.get_model("audit", "LogbookEntry").objects.exclude(key_id=LEGACY_KEY_ID)
    first = keyed.order_by("id").values_list("id", flat=True).first()
    if first is not None:
        raise IrreversibleError(
            f"audit 0005 cannot be reversed: Logbook entries from #{first} on ({keyed.count()} in all) are "
            "hashed under a Logbook key, and going back would drop their key ids; applied again, this "
            "migration would label them legacy-sha256 and verify_logbook would find every one edited. "
            "Keep the audit app at 0005 or later."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_refusal_tally_and_throttle_window"),
    ]

    operations = [
        migrations.CreateModel(
            name="LogbookCheckpoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("entry_id", models.BigIntegerField()),
                ("entry_hash", models.CharField(max_length=64)),
                ("key_id", models.CharField(max_length=32)),
                ("written_at", models.DateTimeField()),
                ("reason", models.CharField(max_length=16)),
                ("object_key", models.CharField(max_length=300)),
                ("version_id", models.CharField(blank=True, max_length=200)),
            ],
            options={
                "ordering": ["-id"],
            },
        ),
        migrations.CreateModel(
            name="LogbookVerification",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("started_at", models.DateTimeField()),
                ("finished_at", models.DateTimeField()),
                ("intact", models.BooleanField()),
                ("entries", models.BigIntegerField(default=0)),
                ("checkpoints", models.IntegerField(default=0)),
                ("exit_code", models.IntegerField()),
                ("kinds", models.JSONField(default=list)),
                ("summary", models.TextField(blank=True)),
            ],
            options={
                "ordering": ["-id"],
            },
        ),
        migrations.AddField(
            model_name="logbookentry",
            name="key_id",
            field=models.CharField(db_default="legacy-sha256", max_length=32),
        ),
        migrations.RunPython(_say_where_legacy_ends, _refuse_to_forget_keyed_entries),
    ]
