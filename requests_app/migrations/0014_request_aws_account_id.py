from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def aws_account_id_from_account(apps, schema_editor):
    """Existing requests: their account's AWS account id now, the best record there is of where their
    users were made (the admin let it change until this release; a request made before a change is
    recorded with the new id, as every part of the portal took it so far)."""
    AccessRequest = apps.get_model("requests_app", "AccessRequest")
    AwsAccount = apps.get_model("accounts", "AwsAccount")
    AccessRequest.objects.update(
        aws_account_id=Subquery(AwsAccount.objects.filter(pk=OuterRef("account_id")).values("account_id")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0014_email_key_mail_domain"),
        ("requests_app", "0013_grant_key_ca_fingerprints"),
    ]

    operations = [
        migrations.AddField(
            model_name="accessrequest",
            name="aws_account_id",
            field=models.CharField(blank=True, default="", editable=False, max_length=12),
        ),
        migrations.RunPython(aws_account_id_from_account, migrations.RunPython.noop),
    ]
