from django.db import migrations, models

# core.usernames.USERNAME_RE: a name with the four-letter suffix was made for a domain controller.
DOMAIN_ACCOUNT_RE = r"^rs-[a-z2-7]{8}-[a-z2-7]{4}$"


def domain_controller_from_username(apps, schema_editor):
    """Existing grants: the kind of user created (its name) is the truth, not the instance's tag now."""
    Grant = apps.get_model("requests_app", "Grant")
    Grant.objects.filter(username__regex=DOMAIN_ACCOUNT_RE).update(domain_controller=True)
    Grant.objects.exclude(username__regex=DOMAIN_ACCOUNT_RE).update(domain_controller=False)


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0006_grant_key_forward_ports"),
    ]

    operations = [
        migrations.AddField(
            model_name="grant",
            name="domain_controller",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.RunPython(domain_controller_from_username, migrations.RunPython.noop),
    ]
