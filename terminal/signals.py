"""Signing out, being deactivated, a password change, the identity provider one signed in through
withdrawn, a request ending, revoking a CLI token, retiring a CA key that signed their
certificates, and taking their instance's region off its account close open terminals and CLI
proxy connections, an account's forwarding change closes the CLI proxy's forwards it withdrew, and
an account's sessions becoming moderated holds its open sessions until an approver watches and
closes the CLI proxy's forwards: the receivers only hand over to the service."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.dispatch import receiver

from accounts.cli_tokens import api_tokens_revoked
from accounts.saml.withdrawal import saml_idp_withdrawn
from accounts.signals import (
    account_forwarding_changed,
    account_regions_taken_off,
    account_sessions_moderated,
    person_deactivated,
    person_password_changed,
)
from requests_app.signals import request_ending, requests_ending
from sshca.signals import ca_key_retired
from terminal import live_services, services


@receiver(user_logged_out, dispatch_uid="terminal-close-on-sign-out")
def close_terminals_on_sign_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None and getattr(user, "pk", None) is not None:
        services.terminals_close_for_user(user_id=user.pk)


@receiver(person_deactivated, dispatch_uid="terminal-close-on-person-deactivated")
def close_terminals_on_person_deactivated(sender: Any, user_id: int, **kwargs: Any) -> None:
    # Their requests' terminals close with the requests; this closes the rest at once (the
    # sign-in check refuses an inactive person too, a few seconds later).
    services.terminals_close_for_user(user_id=user_id, reason=services.DEACTIVATED_MESSAGE)


@receiver(person_password_changed, dispatch_uid="terminal-close-on-password-changed")
def close_terminals_on_password_changed(sender: Any, user_id: int, **kwargs: Any) -> None:
    # Every session of theirs is signed out (the one that changed it has a new key), so is every
    # terminal opened in one; this closes them at once, the sign-in check a few seconds later.
    services.terminals_close_for_user(user_id=user_id, reason=services.CREDENTIALS_CHANGED_MESSAGE)


@receiver(saml_idp_withdrawn, dispatch_uid="terminal-close-on-idp-withdrawn")
def close_terminals_on_idp_withdrawn(sender: Any, user_ids: list[int], **kwargs: Any) -> None:
    # The sessions that IdP signed in are over (accounts.session_lifetime), so is every terminal
    # opened in one; this closes them at once (after the commit), the sign-in check a few seconds later.
    for user_id in user_ids:
        services.terminals_close_for_user(user_id=user_id, reason=services.IDP_WITHDRAWN_MESSAGE)


@receiver(request_ending, dispatch_uid="terminal-close-on-request-ending")
def close_terminals_on_request_ending(sender: Any, request_id: int, end_reason: str, **kwargs: Any) -> None:
    # Sent inside the ending's transaction: the terminals hear of it once it is committed.
    if services.terminals_may_be_open(request_id=request_id):
        transaction.on_commit(
            lambda: services.terminals_close_for_request(request_id=request_id, end_reason=end_reason)
        )


@receiver(requests_ending, dispatch_uid="terminal-close-on-requests-ending")
def close_terminals_on_requests_ending(sender: Any, request_ids: list[int], end_reason: str, **kwargs: Any) -> None:
    for request_id in sorted(services.terminals_may_be_open_among(request_ids=request_ids)):
        transaction.on_commit(
            partial(services.terminals_close_for_request, request_id=request_id, end_reason=end_reason)
        )


@receiver(api_tokens_revoked, dispatch_uid="terminal-close-on-tokens-revoked")
def close_cli_connections_on_tokens_revoked(sender: Any, token_ids: list[int], **kwargs: Any) -> None:
    # Sent inside the revocation's transaction: the connections hear of it once it is committed.
    transaction.on_commit(partial(services.terminals_close_for_tokens, token_ids=list(token_ids)))


@receiver(account_forwarding_changed, dispatch_uid="terminal-forwards-recheck-on-account-change")
def recheck_cli_forwards_on_account_change(sender: Any, account_id: int, **kwargs: Any) -> None:
    # Sent inside the save's transaction: the connections read the account once it is committed.
    transaction.on_commit(partial(services.cli_forwards_recheck_for_account, account_id=account_id))


@receiver(ca_key_retired, dispatch_uid="terminal-close-on-ca-key-retired")
def close_terminals_on_ca_key_retired(sender: Any, ca_key_id: int, fingerprint: str, **kwargs: Any) -> None:
    # Sent inside the retirement's transaction: the connections hear of it once it is committed.
    transaction.on_commit(partial(services.terminals_close_for_ca_key, ca_key_id=ca_key_id, fingerprint=fingerprint))


@receiver(account_regions_taken_off, dispatch_uid="terminal-close-on-account-regions-taken-off")
def close_terminals_on_regions_taken_off(sender: Any, account_id: int, regions: list[str], **kwargs: Any) -> None:
    # Sent inside the save's transaction: the sessions there hear of it once it is committed.
    transaction.on_commit(partial(services.terminals_close_for_regions, account_id=account_id, regions=list(regions)))


@receiver(account_sessions_moderated, dispatch_uid="terminal-moderate-open-sessions-on-account-change")
def moderate_open_sessions_on_account_change(sender: Any, account_id: int, **kwargs: Any) -> None:
    # Sent inside the save's transaction: the sessions read who watches once it is committed, and the
    # CLI proxy connections close their open forwards, which no approver can watch (terminal.proxy.session).
    transaction.on_commit(partial(live_services.account_sessions_moderate, account_id=account_id))
    transaction.on_commit(partial(services.cli_forwards_recheck_for_account, account_id=account_id))
