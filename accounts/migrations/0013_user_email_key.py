"""User.email_key: which users are one person, in one canonical form (accounts.email_keys.email_key),
filled here for the users stored before it; User.save keeps it from then on."""

from typing import Any

from django.db import migrations, models


def fill_email_keys(apps: Any, schema_editor: Any) -> None:
    # The live function, not a copy: the key must be the one the code compares against.
    from accounts.email_keys import email_key

    User = apps.get_model("accounts", "User")
    changed = []
    for user in User.objects.only("pk", "email", "email_key").iterator(chunk_size=1000):
        key = email_key(user.email)
        if user.email_key != key:
            user.email_key = key
            changed.append(user)
    User.objects.bulk_update(changed, ["email_key"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0012_device_session_end"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="email_key",
            field=models.CharField(blank=True, default="", editable=False, max_length=64),
        ),
        migrations.AddIndex(
            model_name="user",
            index=models.Index(fields=["email_key"], name="accounts_user_email_key"),
        ),
        migrations.RunPython(fill_email_keys, migrations.RunPython.noop),
    ]
