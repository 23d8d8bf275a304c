"""Each grant counts its failed removal tries (``Grant.cleanup_failures``), for the counter of
failed removal Run Commands: the Logbook no longer hears of every one. The column alone: adding it
locks the grants table for a moment; 0019 fills it from the Logbook without that lock.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0017_request_newest_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="grant",
            name="cleanup_failures",
            field=models.PositiveIntegerField(db_default=0, default=0, editable=False),
        ),
    ]
