"""User.email_key again, now that the key takes an address as mail to it is sent (accounts.email_keys:
the domain in IDNA's form, which drops some marks and writes A-labels; a quoted local part unquoted):
users whose stored key was computed before are given the key the code compares against."""

from typing import Any

from django.db import migrations


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
    dependencies = [("accounts", "0013_user_email_key")]

    operations = [migrations.RunPython(fill_email_keys, migrations.RunPython.noop)]
