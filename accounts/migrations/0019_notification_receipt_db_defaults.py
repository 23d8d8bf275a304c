"""Receipts written by the release before 0016 during a rolling deploy: its models know neither
``attempts`` nor ``claimed_at``, and its INSERTs leave them out. The database gives them what 0016
gave the receipts made before it: one attempt, claimed when written (that release wrote a receipt
as the send began, and ``sent_at`` at the same time)."""

import django.db.models.functions.datetime
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0018_token_idp_slug"),
    ]

    operations = [
        migrations.AlterField(
            model_name="notificationreceipt",
            name="attempts",
            field=models.PositiveSmallIntegerField(db_default=1, default=1),
        ),
        migrations.AlterField(
            model_name="notificationreceipt",
            name="claimed_at",
            field=models.DateTimeField(
                db_default=django.db.models.functions.datetime.Now(), default=django.utils.timezone.now
            ),
        ),
    ]
