from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0012_grant_sessions_end_error"),
    ]

    operations = [
        # Left None on existing grants: what their hosts' lines carry is not known, so the periodic
        # bind_grant_keys rewrites each live Linux grant's lines once with the CA's keys of now.
        migrations.AddField(
            model_name="grant",
            name="key_ca_fingerprints",
            field=models.JSONField(default=None, editable=False, null=True),
        ),
    ]
