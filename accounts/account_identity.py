"""What may change of a saved account's AWS identity: its account id never, its role only within that
AWS account and only while no grant there still needs the role to remove its user
(``AwsAccount.clean`` and ``save`` ask here).

The users Passport made are in the AWS account the row named when they were made. A fleet sent to
another one would find no such instance there, and removal would take "no such instance" for the
host gone: the user left where it is, its sessions never ended, the Logbook saying otherwise.

Grants belong to the requests app, which sits above this one: it hands a count of them at start-up
(``RequestsAppConfig.ready``), as the Logbook is handed account names (``audit.account_names``), so
accounts asks without importing it. With no source (no requests app) there are no grants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accounts.models import AwsAccount

# Given an account's pk, how many of its grants may still have left a user on an instance.
LiveGrantsSource = Callable[[int], int]

_source: LiveGrantsSource | None = None


def live_grants_source_set(*, source: LiveGrantsSource | None) -> None:
    global _source
    _source = source


def live_grants_count(account_pk: int) -> int:
    """How many grants on the account may still have left a user on an instance (one query)."""
    return _source(account_pk) if _source is not None else 0


def identity_change_errors(account: AwsAccount) -> dict[str, str]:
    """Field to message for what is wrong with changing this saved account's AWS account id or role
    now (nothing for an account not yet saved). Another role in the same AWS account is allowed once
    no grant there needs one to remove its user."""
    if account._state.adding or account.pk is None:
        return {}
    stored = type(account).objects.filter(pk=account.pk).values_list("account_id", "role_arn").first()
    if stored is None:
        return {}
    account_id, role_arn = stored
    if account.account_id != account_id:
        return {
            "account_id": f"The AWS account id cannot change once the account is saved (it is {account_id}): "
            "the users Passport made are in that account. Add another account for another AWS account."
        }
    if account.role_arn == role_arn:
        return {}
    live = live_grants_count(account.pk)
    if not live:
        return {}
    grants = "grant still has a user" if live == 1 else "grants still have users"
    return {
        "role_arn": f"The role cannot change while {live} {grants} on this account's instances to remove "
        "(their requests' pages show the cleanup). Change it once their cleanup is over."
    }
