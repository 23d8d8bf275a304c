from django.db import migrations, models

from core.index_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; built so, requests keep being made
    # while the index is built (README, Migrations).
    atomic = False

    dependencies = [
        ("requests_app", "0016_rolling_deploy_db_defaults"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="accessrequest",
            index=models.Index(fields=["-created_at", "-id"], name="request_newest"),
        ),
    ]
