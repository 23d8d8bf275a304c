"""The IAM role an identity provider names for a person, per AWS account.

AWS's own SAML federation carries the roles a person may take in the attribute
``https://aws.amazon.com/SAML/Attributes/Role``: one value per role, each a role ARN and the
ARN of the account's SAML provider separated by a comma (either order). Passport uses the
role as the person's IAM principal on that account, the one IAM's SimulatePrincipalPolicy
is asked about. Every value is hostile until it parses: anything else is refused, with why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::(?P<account>[0-9]{12}):role/[A-Za-z0-9_+=,.@/-]{1,512}")
_PROVIDER_ARN = re.compile(r"arn:aws[a-z-]*:iam::(?P<account>[0-9]{12}):saml-provider/[A-Za-z0-9_.-]{1,128}")
# The most values looked at: an IdP sends one per account and role, not thousands.
MAX_VALUES = 100


@dataclass
class NamedRoles:
    by_account: dict[str, str] = field(default_factory=dict)  # 12-digit account id -> role ARN
    refused: list[dict[str, str]] = field(default_factory=list)  # {"value", "reason"} for the Logbook

    def refuse(self, value: str, reason: str) -> None:
        self.refused.append({"value": value[:300], "reason": reason})


def saml_roles_parse(values: list[str]) -> NamedRoles:
    """The role per account that the Role attribute's values name; what does not parse is refused.

    Two different roles for one account are ambiguous (AWS would let the person choose), so
    that account gets none rather than a guess.
    """
    roles = NamedRoles()
    ambiguous: set[str] = set()
    for value in values[:MAX_VALUES]:
        parts = [part.strip() for part in str(value).split(",")]
        if len(parts) != 2:
            roles.refuse(str(value), "not a role ARN and a provider ARN")
            continue
        role = next((m for part in parts if (m := _ROLE_ARN.fullmatch(part))), None)
        provider = next((m for part in parts if (m := _PROVIDER_ARN.fullmatch(part))), None)
        if role is None or provider is None:
            roles.refuse(str(value), "not a role ARN and a provider ARN")
            continue
        account = role["account"]
        if provider["account"] != account:
            roles.refuse(str(value), "the role and the provider are in different accounts")
            continue
        if roles.by_account.get(account, role[0]) != role[0]:
            ambiguous.add(account)
        roles.by_account[account] = role[0]
    for account in sorted(ambiguous):
        roles.refuse(roles.by_account.pop(account), f"several roles named for account {account}")
    if len(values) > MAX_VALUES:
        roles.refuse(f"{len(values) - MAX_VALUES} more values", "too many values")
    return roles
