"""``check --deploy``: which KMS key keeps a Windows password while it waits in Parameter Store."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


def handoff_key_check(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    if settings.PASSPORT_ENV != "production" or settings.PASSPORT_HANDOFF_KMS_KEY:
        return []
    return [
        checks.Warning(
            "PASSPORT_HANDOFF_KMS_KEY is empty: a Windows password waits in Parameter Store under the "
            "account's aws/ssm key, which every principal of the account (ReadOnlyAccess included) may "
            "decrypt through Parameter Store while its script runs.",
            hint="Create a KMS key of your own in each account and region with Windows instances, give it an "
            "alias (alias/passport-handoff), let the portal's role Encrypt and the instances' roles Decrypt with "
            "it, and set PASSPORT_HANDOFF_KMS_KEY=alias/passport-handoff (deploy/README.md). "
            "Set it to alias/aws/ssm to keep AWS's key on purpose.",
            id="passport.W005",
        )
    ]
