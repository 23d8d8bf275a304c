"""Group naming scheme (attribute ``groups``, or as mapped per IdP):

- ``passport:<account>:admin`` / ``:observer`` / ``:approver`` -- a membership on one AWS
  account, named by its 12-digit id, or by its name in Passport (case does not matter) when no
  other account has that name. A 12-digit key is only ever an id. A name several accounts
  share grants nothing and is recorded (``auth.saml_group_ambiguous``).
  ``admin`` and ``observer`` set the role (admin wins); ``approver`` lets the person approve.
- ``passport:auditor`` -- reads the whole Logbook.
- ``passport:site-admin`` -- Django admin; honoured only from an internal-store IdP.

Memberships are synced at every sign-in: those the groups name are created or updated and
marked ``source=saml``; ``saml`` memberships the groups no longer name are removed. A
membership an admin granted (``source=local``) stays unless the groups name its account,
in which case the IdP's word replaces it. Other groups are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from accounts.models import AwsAccount, Membership

_GROUP_RE = re.compile(r"passport:(?P<account>.+):(?P<grant>admin|observer|approver)", re.IGNORECASE)
_ACCOUNT_ID_RE = re.compile(r"[0-9]{12}")


@dataclass
class GroupGrants:
    memberships: dict[int, tuple[str, bool]]  # AwsAccount pk -> (role, can approve)
    auditor: bool
    site_admin: bool
    # Groups naming an account by a name several accounts share: they grant nothing.
    ambiguous: list[dict[str, Any]] = field(default_factory=list)


def _accounts_named(by_key: dict[str, dict[str, bool]]) -> tuple[dict[str, AwsAccount], dict[str, list[str]]]:
    """Each group key's one account, and the keys that name several (with their account ids).

    A 12-digit key is an account id and matches that account only, never a name (a name may
    be anything, another account's id too). A name matches when exactly one account has it, in
    any case: names are not unique, and a group must never grant on every account of a name.
    """
    ids = [key for key in by_key if _ACCOUNT_ID_RE.fullmatch(key)]
    names = [key for key in by_key if not _ACCOUNT_ID_RE.fullmatch(key)]
    found: dict[str, AwsAccount] = {
        account.account_id: account for account in AwsAccount.objects.filter(account_id__in=ids)
    }
    ambiguous: dict[str, list[str]] = {}
    if names:
        query = Q()
        for name in names:
            query |= Q(name__iexact=name)
        by_name: dict[str, list[AwsAccount]] = {}
        for account in AwsAccount.objects.filter(query).order_by("account_id"):
            for name in names:
                if account.name.lower() == name:
                    by_name.setdefault(name, []).append(account)
        for name, accounts in by_name.items():
            if len(accounts) == 1:
                found[name] = accounts[0]
            else:
                ambiguous[name] = [account.account_id for account in accounts]
    return found, ambiguous


def groups_to_grants(groups: list[str]) -> GroupGrants:
    """What the IdP's groups give, by the scheme in this module's docstring."""
    by_key: dict[str, dict[str, bool]] = {}
    group_names: dict[str, list[str]] = {}
    auditor = site_admin = False
    for group in groups:
        group = group.strip()
        if group.lower() == "passport:auditor":
            auditor = True
        elif group.lower() == "passport:site-admin":
            site_admin = True
        elif match := _GROUP_RE.fullmatch(group):
            key = match["account"].strip().lower()
            by_key.setdefault(key, {})[match["grant"].lower()] = True
            group_names.setdefault(key, []).append(group[:300])
    found, ambiguous = _accounts_named(by_key) if by_key else ({}, {})
    per_account: dict[int, dict[str, bool]] = {}
    for key, account in found.items():
        # The same account named by its id and by its name: the grants add up.
        merged = per_account.setdefault(account.pk, {})
        merged.update({grant: True for grant, given in by_key[key].items() if given})
    memberships: dict[int, tuple[str, bool]] = {}
    for account_pk, grants in per_account.items():
        if grants.get("admin"):
            role = Membership.Role.ADMIN
        elif grants.get("observer"):
            role = Membership.Role.OBSERVER
        else:
            role = Membership.Role.NONE
        memberships[account_pk] = (str(role), bool(grants.get("approver")))
    refused = [{"groups": group_names[key], "accounts": ids} for key, ids in sorted(ambiguous.items())]
    return GroupGrants(memberships=memberships, auditor=auditor, site_admin=site_admin, ambiguous=refused)
