"""Which SAML identity provider stood behind a CLI token, and behind a device code confirmed: the
confirming browser session's (accounts.saml.withdrawal revokes them when it is disabled or deleted).
Rows from before get None, "not known" (not "" for another sign-in): see that module for what a
withdrawal does with them."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0017_account_inventory_sync_claim"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="idp_slug",
            field=models.CharField(blank=True, max_length=40, null=True, verbose_name="signed in through IdP"),
        ),
        migrations.AddField(
            model_name="deviceauthorization",
            name="idp_slug",
            field=models.CharField(blank=True, max_length=40, null=True),
        ),
    ]
