"""SamlIdentity.name_id_key: a link is found by its NameID folded as an email address is when the
NameID is email-like (accounts.saml.name_ids), so a NameID differing only in case finds its person.

Links made before kept no Format: they are keyed as unspecified (folded), and a persistent NameID
signing in later finds its link by the exact NameID and records its Format (accounts.saml.services).
Two links of one store whose NameIDs fold alike (a person who came back under another case) cannot
both keep the key: the oldest keeps it and signs in; each later one gets a key no NameID has
(``duplicate-<id>``), so it signs nobody in, and stays for a site admin to look at.
"""

from typing import Any

from django.db import migrations, models


def fill_name_id_keys(apps: Any, schema_editor: Any) -> None:
    # The live function, not a copy: the key must be the one the code compares against.
    from accounts.saml.name_ids import name_id_key

    SamlIdentity = apps.get_model("accounts", "SamlIdentity")
    taken: set[tuple[str, str]] = set()
    links = list(SamlIdentity.objects.order_by("created_at", "pk"))
    for link in links:
        key = name_id_key(link.name_id, link.name_id_format)
        link.name_id_key = key if (link.identity_store, key) not in taken else f"duplicate-{link.pk}"
        taken.add((link.identity_store, key))
    SamlIdentity.objects.bulk_update(links, ["name_id_key"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0014_email_key_mail_domain")]

    operations = [
        migrations.AddField(
            model_name="samlidentity",
            name="name_id_format",
            field=models.CharField(blank=True, default="", max_length=256),
        ),
        migrations.AddField(
            model_name="samlidentity",
            name="name_id_key",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(fill_name_id_keys, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="samlidentity", name="saml_identity_unique_store_name_id"),
        migrations.AddConstraint(
            model_name="samlidentity",
            constraint=models.UniqueConstraint(
                fields=("identity_store", "name_id_key"), name="saml_identity_unique_store_key"
            ),
        ),
    ]
