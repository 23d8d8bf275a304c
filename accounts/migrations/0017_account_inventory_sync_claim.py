"""AwsAccount's claim on a person's inventory sync: when the last one started and ended, so only one
runs at a time per account and the next waits out a cooldown (requests_app.services.inventory)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0016_notification_claim_then_send"),
    ]

    operations = [
        migrations.AddField(
            model_name="awsaccount",
            name="inventory_sync_ended_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="awsaccount",
            name="inventory_sync_started_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
    ]
