"""What an identity provider's word makes of a person's memberships at each SAML sign-in.

Groups give memberships and roles by the scheme in ``accounts.saml.groups``; AWS's Role attribute
(``accounts.saml.roles``) gives each membership its IAM principal. Only the memberships SAML made
are added and removed; an admin's stay. Called by ``accounts.saml.services.saml_person_sign_in``
inside its transaction, the person's rows locked.
"""

from __future__ import annotations

from typing import Any

from accounts.models import AwsAccount, Membership, User
from accounts.portal_roles import is_portal_role
from accounts.saml.roles import NamedRoles


def principals_sync(user: User, named: NamedRoles) -> dict[str, Any]:
    """Each membership's IAM principal becomes the role the assertion names for its account.

    The role ARN's account id must be the membership's account: a role for an account the
    person holds no membership on is refused, never moved elsewhere. Nor may it be a role the
    portal itself assumes (``accounts.portal_roles``): IAM would be asked about a role that may
    do everything Passport does, in place of the person's own limits. A ``saml`` membership
    whose account the assertion names no role for loses its principal (the IdP's word is
    the current one); an admin's ``local`` membership keeps the ARN it has.
    """
    memberships = list(Membership.objects.select_related("account").filter(user=user))
    by_account = {membership.account.account_id: membership for membership in memberships}
    refused = list(named.refused)
    portal_roles = list(AwsAccount.objects.values_list("role_arn", flat=True))
    allowed: dict[str, str] = {}
    for account_id, arn in named.by_account.items():
        if account_id not in by_account:
            refused.append({"value": arn[:300], "reason": f"no membership on account {account_id}"})
        elif is_portal_role(arn, portal_roles):
            refused.append({"value": arn[:300], "reason": "the role Passport itself assumes in the account"})
        else:
            allowed[account_id] = arn
    set_arns: dict[str, str] = {}
    cleared: list[str] = []
    for membership in memberships:
        account_id = membership.account.account_id
        wanted = allowed.get(account_id)
        if wanted is None and membership.source == Membership.Source.SAML:
            wanted = ""
        if wanted is None or wanted == membership.principal_arn:
            continue
        membership.principal_arn = wanted
        membership.save(update_fields=["principal_arn"])
        if wanted:
            set_arns[account_id] = wanted
        else:
            cleared.append(account_id)
    return {"set": set_arns, "cleared": cleared, "refused": refused}


# Memberships one sign-in added (or changed, or removed) named in its Logbook entry; the rest are
# counted (``memberships_added_not_named``...). An assertion may carry any number of groups.
MEMBERSHIPS_NAMED = 50


def _terms(membership: Membership) -> dict[str, Any]:
    return {"role": membership.role, "can_approve": membership.can_approve, "source": membership.source}


def memberships_sync(user: User, wanted: dict[int, tuple[str, bool]]) -> tuple[dict[str, Any], list[int]]:
    """Bring the person's memberships in line with the groups. Returns what changed, for the
    Logbook, and the pks of the accounts whose membership was changed or removed.

    What changed is, per list (``memberships_added``, ``_changed``, ``_removed``), each membership's
    account id with its role, approver flag and source before and after (``None`` on the side where
    there was or is none), by account id; past ``MEMBERSHIPS_NAMED`` a list is cut and the rest counted
    in ``<list>_not_named``.
    """
    existing = {m.account_id: m for m in Membership.objects.select_related("account").filter(user=user)}
    accounts = {a.pk: a for a in AwsAccount.objects.filter(pk__in=wanted)}
    added: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    touched: list[int] = []
    for account_pk, (role, can_approve) in wanted.items():
        if role == Membership.Role.NONE and not can_approve:
            continue
        current = existing.get(account_pk)
        if current is None:
            made = Membership.objects.create(
                user=user, account_id=account_pk, role=role, can_approve=can_approve, source=Membership.Source.SAML
            )
            added.append({"account": accounts[account_pk].account_id, "before": None, "after": _terms(made)})
        elif (current.role, current.can_approve, current.source) != (role, can_approve, Membership.Source.SAML):
            before = _terms(current)
            current.role, current.can_approve, current.source = role, can_approve, Membership.Source.SAML
            current.save(update_fields=["role", "can_approve", "source"])
            changed.append({"account": current.account.account_id, "before": before, "after": _terms(current)})
            touched.append(account_pk)
    for account_pk, membership in existing.items():
        still = wanted.get(account_pk)
        if membership.source == Membership.Source.SAML and (
            still is None or (still[0] == Membership.Role.NONE and not still[1])
        ):
            removed.append({"account": membership.account.account_id, "before": _terms(membership), "after": None})
            touched.append(account_pk)
            membership.delete()
    changes: dict[str, Any] = {}
    for key, items in (
        ("memberships_added", added),
        ("memberships_changed", changed),
        ("memberships_removed", removed),
    ):
        items.sort(key=lambda item: item["account"])
        changes[key] = items[:MEMBERSHIPS_NAMED]
        if len(items) > MEMBERSHIPS_NAMED:
            changes[f"{key}_not_named"] = len(items) - MEMBERSHIPS_NAMED
    return changes, touched
