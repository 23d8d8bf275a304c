"""Seal the second factors' secrets stored before Passport's MFA adapter sealed them (accounts/mfa.py)."""

from typing import Any

from django.db import migrations

# The fields of Authenticator.data that allauth passes through the adapter's encrypt().
_SEALED_FIELDS = ("secret", "seed")


def seal_existing(apps: Any, schema_editor: Any) -> None:
    from accounts.mfa import SEALED_PREFIX, seal_mfa_secret

    Authenticator = apps.get_model("mfa", "Authenticator")
    for authenticator in Authenticator.objects.all().iterator():
        data = dict(authenticator.data or {})
        changed = False
        for field in _SEALED_FIELDS:
            value = data.get(field)
            if isinstance(value, str) and not value.startswith(SEALED_PREFIX):
                data[field] = seal_mfa_secret(value)
                changed = True
        codes = data.get("migrated_codes")
        if isinstance(codes, list) and any(not str(code).startswith(SEALED_PREFIX) for code in codes):
            data["migrated_codes"] = [
                code if str(code).startswith(SEALED_PREFIX) else seal_mfa_secret(str(code)) for code in codes
            ]
            changed = True
        if changed:
            Authenticator.objects.filter(pk=authenticator.pk).update(data=data)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0009_deviceauthorization_last_polled_at"),
        ("mfa", "0003_authenticator_type_uniq"),
    ]

    operations = [migrations.RunPython(seal_existing, migrations.RunPython.noop)]
