from django.db import migrations, models

from core.index_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; built so, the table keeps taking
    # inserts while the indexes are built (README, Migrations).
    atomic = False

    dependencies = [
        ("terminal", "0007_ticket_expires_at_index"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="terminalsession",
            index=models.Index(fields=["-started_at", "-id"], name="terminal_session_newest"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="terminalsession",
            index=models.Index(
                condition=models.Q(("ended_at__isnull", True)),
                fields=["started_at", "id"],
                name="terminal_session_open",
            ),
        ),
    ]
