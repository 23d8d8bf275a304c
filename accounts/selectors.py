"""Reads about accounts and memberships, scoped to the person asking."""

from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery

from accounts import permissions
from accounts.models import AwsAccount, Membership, User
from accounts.portal_roles import is_portal_role


def account_list_with_role(*, user: User) -> QuerySet[AwsAccount]:
    """The accounts this person can see, each annotated with ``my_role`` (None where they hold none)."""
    own_membership = Membership.objects.filter(user=user, account=OuterRef("pk"))
    return (
        permissions.visible_accounts(user)
        .annotate(my_role=Subquery(own_membership.values("role")[:1]))
        .order_by("name", "account_id")
    )


def account_names() -> dict[str, str]:
    """Account id to name for every account: how the Logbook's review page names the ids it stores."""
    return dict(AwsAccount.objects.values_list("account_id", "name"))


def approvable_account_pks(*, user: User) -> set[int]:
    return set(permissions.approvable_accounts(user).values_list("pk", flat=True))


def principal_arn_for(*, user: User, account: AwsAccount) -> str:
    """The IAM principal AWS is asked about for this person on this account, or "" if none.

    The membership's own ARN (set by an admin, or from the SAML Role attribute at each
    sign-in) comes first; a member from an identity provider without one falls back to the
    account's default role for federated people. Without a membership there is none: the
    default role stands for the account's federated members, not for everyone the identity
    provider knows (a person whose group was dropped keeps their SAML identity). The portal's own
    role is nobody's principal: "" instead.
    """
    membership = Membership.objects.filter(user=user, account=account).only("principal_arn").first()
    if membership is None:
        return ""
    principal = membership.principal_arn
    if not principal and account.federated_role_arn and user.saml_identities.exists():
        principal = account.federated_role_arn
    # Never the role the portal itself assumes here, whoever stored it (accounts.portal_roles): a
    # principal must be in its account, and this is the portal's role in it.
    return "" if is_portal_role(principal, [account.role_arn]) else principal
