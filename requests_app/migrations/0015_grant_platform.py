from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def platform_from_instance(apps, schema_editor):
    """Existing grants: the platform of their instance as the inventory has it now, the best there is
    (grants did not record it). A Linux grant is never a domain account, whatever the instance's tag
    said when it was made (0007 took that from the username, on every platform)."""
    Grant = apps.get_model("requests_app", "Grant")
    Instance = apps.get_model("requests_app", "Instance")
    Grant.objects.update(platform=Subquery(Instance.objects.filter(pk=OuterRef("instance_id")).values("platform")[:1]))
    Grant.objects.filter(platform="linux", domain_controller=True).update(domain_controller=False)


class Migration(migrations.Migration):
    dependencies = [
        ("requests_app", "0014_request_aws_account_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="grant",
            name="platform",
            field=models.CharField(
                choices=[("linux", "Linux"), ("windows", "Windows")], default="linux", editable=False, max_length=16
            ),
            preserve_default=False,
        ),
        migrations.RunPython(platform_from_instance, migrations.RunPython.noop),
    ]
