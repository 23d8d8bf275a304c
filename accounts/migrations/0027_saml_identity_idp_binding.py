"""Each SAML link keeps the IdP it belongs to (its entity id, and its admin row's nonce), not only
its slug: a link made before is bound to the IdP that has its slug now, which made it (a settings
entry wins over an admin row, as at sign-in; a disabled row is still that IdP). A link whose slug no
IdP has any more is bound to none that can come ("": refused until a site admin moves it)."""

from typing import Any

from django.conf import settings
from django.db import migrations, models


def _settings_entity_ids() -> dict[str, str]:
    entries = getattr(settings, "PASSPORT_SAML_IDPS", None) or []
    found: dict[str, str] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("slug") and entry.get("entity_id"):
            found.setdefault(str(entry["slug"]), str(entry["entity_id"]))
    return found


def bind_links(apps: Any, schema_editor: Any) -> None:
    SamlIdentity = apps.get_model("accounts", "SamlIdentity")
    SamlIdentityProvider = apps.get_model("accounts", "SamlIdentityProvider")
    configured = _settings_entity_ids()
    for slug in SamlIdentity.objects.values_list("idp_slug", flat=True).distinct():
        identity = (configured[slug], "") if slug in configured else ("", "")
        if slug not in configured:
            row = SamlIdentityProvider.objects.filter(slug=slug).values_list("entity_id", "trust_nonce").first()
            identity = row if row is not None else identity
        SamlIdentity.objects.filter(idp_slug=slug, idp_entity_id__isnull=True).update(
            idp_entity_id=identity[0], idp_trust_nonce=identity[1]
        )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0026_saml_idp_trust_nonce"),
    ]

    operations = [
        migrations.AddField(
            model_name="samlidentity",
            name="idp_entity_id",
            field=models.CharField(blank=True, editable=False, max_length=500, null=True),
        ),
        migrations.AddField(
            model_name="samlidentity",
            name="idp_trust_nonce",
            field=models.CharField(blank=True, db_default="", default="", editable=False, max_length=64),
        ),
        migrations.RunPython(bind_links, migrations.RunPython.noop, elidable=False),
    ]
