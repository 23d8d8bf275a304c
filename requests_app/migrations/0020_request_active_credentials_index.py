from django.db import migrations, models

from core.index_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; built so, requests keep being made
    # while the index is built (README, Migrations).
    atomic = False

    dependencies = [
        ("requests_app", "0019_grant_cleanup_failures_filled"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="accessrequest",
            index=models.Index(
                condition=models.Q(("aws_credentials_until__isnull", False), ("status", "active")),
                fields=["aws_credentials_until"],
                name="request_active_credentials",
            ),
        ),
    ]
