"""The roles Passport itself assumes in the customer's accounts, which no person may be mapped to.

The IAM gate asks SimulatePrincipalPolicy about a person's principal (``requests_app.iam``): were
that the portal's own role (``AwsAccount.role_arn``), which may do everything Passport does, the
customer's IAM limits on the person would be switched off. So neither the SAML Role attribute nor
an admin may make it anyone's principal. IAM role names are unique in an account whatever their
path or case, so a role is known by its account and its name in lower case: ``role/x/PassportPortal``
and ``role/passportportal`` are the same role to this check, and so is a session of it
(``sts::<account>:assumed-role/PassportPortal/<session>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_ROLE = re.compile(
    r"^arn:aws[a-z-]*:(?:iam::(?P<account>\d{12}):role/(?:[^/]*/)*(?P<name>[^/]+)"
    r"|sts::(?P<sts_account>\d{12}):assumed-role/(?P<sts_name>[^/]+)/.*)$"
)


def role_identity(arn: str) -> tuple[str, str] | None:
    """The account and lower-case name of the role an ARN names (a session of it included); None for others."""
    match = _ROLE.match(arn or "")
    if match is None:
        return None
    if match["account"]:
        return match["account"], match["name"].casefold()
    return match["sts_account"], match["sts_name"].casefold()


def is_portal_role(arn: str, portal_role_arns: Iterable[str]) -> bool:
    """Whether ``arn`` names one of the roles the portal assumes (``portal_role_arns``), or a session of one."""
    identity = role_identity(arn)
    return identity is not None and identity in {role_identity(portal) for portal in portal_role_arns}
