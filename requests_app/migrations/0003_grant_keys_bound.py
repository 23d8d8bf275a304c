from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0002_admin_rights"),
    ]

    operations = [
        # Grants that exist now were provisioned with per-person principals: not bound yet.
        migrations.AddField(
            model_name="grant",
            name="keys_bound",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.AlterField(
            model_name="grant",
            name="keys_bound",
            field=models.BooleanField(default=True, editable=False),
        ),
    ]
