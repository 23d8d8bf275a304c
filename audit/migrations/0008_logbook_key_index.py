"""An index for asking whether an entry under a newer Logbook key comes before a given one: the
Logbook page's verdict under a retired key reads as genuine only when none does (audit.key_order).
Built concurrently: every action appends to this table (README, Migrations)."""

from django.db import migrations, models

from core.index_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("audit", "0007_logbook_terminal_session_index"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="logbookentry",
            index=models.Index(fields=["key_id", "id"], name="logbook_key"),
        ),
    ]
