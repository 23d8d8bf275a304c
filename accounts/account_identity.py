"""What may change of a saved account's AWS identity: its account id never, its role only within that
AWS account (``AwsAccount.clean`` and ``save`` ask here), at any time.

The users Passport made are in the AWS account the row named when they were made. A fleet sent to
another one would find no such instance there, and removal would take "no such instance" for the
host gone: the user left where it is, its sessions never ended, the Logbook saying otherwise. That
is why the id is fixed and the role stays in it (and why removal acts only in the account each
request was made in, ``provisioning.common.request_fleet``).

Another role in the same AWS account is allowed even while grants there still wait to remove their
users: a role deleted, renamed or no longer trusting the portal is the commonest reason removal is
stuck, and pointing the account at a working role is the only repair. Such a change is its own
Logbook entry (``account.role_changed``, with how many grants wait for the role), besides the
admin's trail.

Grants belong to the requests app, which sits above this one: it hands a count of them at start-up
(``RequestsAppConfig.ready``), as the Logbook is handed account names (``audit.account_names``), so
accounts asks without importing it. With no source (no requests app) there are no grants.

The model asks here with plain values (the saved row's id and role: ``AwsAccount.stored_identity``)
rather than itself, so that this module need not import the model that imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from audit.services import AccountLike, logbook_append

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractUser

ROLE_CHANGED = "account.role_changed"

# Given an account's pk, how many of its grants may still have left a user on an instance.
LiveGrantsSource = Callable[[int], int]

_source: LiveGrantsSource | None = None


def live_grants_source_set(*, source: LiveGrantsSource | None) -> None:
    global _source
    _source = source


def live_grants_count(account_pk: int) -> int:
    """How many grants on the account may still have left a user on an instance (one query)."""
    return _source(account_pk) if _source is not None else 0


# The saved row's AWS account id and role; None for an account not yet saved.
StoredIdentity = tuple[str, str] | None


def identity_change_errors(*, stored: StoredIdentity, account_id: str) -> dict[str, str]:
    """Field to message for what is wrong with changing a saved account's AWS account id to
    ``account_id`` now (nothing for an account not yet saved). The role's own rule, that it is in this
    AWS account, is checked with the field (``AwsAccount.clean`` and ``save``): any role there may
    replace it."""
    if stored is None or account_id == stored[0]:
        return {}
    return {
        "account_id": f"The AWS account id cannot change once the account is saved (it is {stored[0]}): "
        "the users Passport made are in that account. Add another account for another AWS account."
    }


@dataclass(frozen=True)
class RoleChange:
    """A new role for an account whose grants still wait for one to remove their users."""

    previous_role: str
    role: str
    grants_waiting: int


def role_change_awaited(*, stored: StoredIdentity, account_pk: int, role_arn: str) -> RoleChange | None:
    """What a save replaces, when it gives the account another role (``role_arn``) while grants there
    still need one to remove their users (None otherwise: nothing to record beyond the admin's trail)."""
    if stored is None or role_arn == stored[1]:
        return None
    waiting = live_grants_count(account_pk)
    return RoleChange(previous_role=stored[1], role=role_arn, grants_waiting=waiting) if waiting else None


def role_change_record(*, account: AccountLike, change: RoleChange, actor: AbstractUser | None) -> None:
    """The ``account.role_changed`` entry: which role replaced which, and how many grants wait for it.
    Call it in the transaction that saves the account, so the two commit together."""
    logbook_append(
        action=ROLE_CHANGED,
        actor=actor,
        account=account,
        detail={
            "previous_role": change.previous_role,
            "role": change.role,
            "grants_waiting": change.grants_waiting,
        },
    )
