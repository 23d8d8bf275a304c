"""What the requests app does when the apps below it announce a change: the receivers only hand
over to the service."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from accounts.cli_tokens import api_tokens_revoked
from accounts.signals import (
    account_cli_sessions_recorded,
    account_forwarding_changed,
    account_regions_taken_off,
    account_sessions_moderated,
    approval_policy_saved,
    memberships_changed,
    person_deactivated,
    person_email_changed,
    person_site_admin_removed,
)
from core.dispatch import task_send_on_commit
from requests_app import services


@receiver(memberships_changed, dispatch_uid="requests-revoke-on-memberships-changed")
def revoke_access_on_memberships_changed(
    sender: Any, memberships: list[tuple[int, int]], actor: Any, via: str, **kwargs: Any
) -> None:
    # Sent inside the transaction that changed them: the ending commits, or rolls back, with it.
    services.access_requests_revoke_for_memberships(memberships=memberships, actor=actor, via=via)
    # And an approval they gave a request still waiting stops counting if they no longer approve there.
    for user_id, account_id in sorted(set(memberships)):
        services.access_request_approvals_discounted(
            approver_id=user_id, account_ids=[account_id], actor=actor, via=via
        )


@receiver(person_deactivated, dispatch_uid="requests-revoke-on-person-deactivated")
def revoke_access_on_person_deactivated(
    sender: Any, user_id: int, actor: Any, via: str, newly: bool = True, **kwargs: Any
) -> None:
    # As above: in the transaction that deactivated them (saved again later: nothing is left to end).
    services.access_requests_revoke_for_person(user_id=user_id, actor=actor, via=via)
    if newly:
        services.access_request_approvals_discounted(approver_id=user_id, account_ids=None, actor=actor, via=via)


@receiver(person_site_admin_removed, dispatch_uid="requests-discount-on-person-site-admin-removed")
def discount_approvals_on_site_admin_removed(sender: Any, user_id: int, actor: Any, **kwargs: Any) -> None:
    # A site admin approves on every account; no longer one, their approvals on accounts they do
    # not approve for as a member stop counting: on record in the transaction that took it away.
    services.access_request_approvals_discounted(
        approver_id=user_id, account_ids=None, actor=actor, via="site_admin_removed"
    )


@receiver(person_email_changed, dispatch_uid="requests-reweigh-on-person-email-changed")
def reweigh_approvals_on_person_email_changed(sender: Any, user_id: int, actor: Any, via: str, **kwargs: Any) -> None:
    # Who is one person changed: an approval by the requester in person, or a second one by one
    # person, stops counting; on record in the transaction that saved the email.
    services.access_request_approvals_reweighed(user_id=user_id, actor=actor, via=via)


@receiver(account_forwarding_changed, dispatch_uid="requests-end-withdrawn-sessions-on-forwarding-changed")
def end_withdrawn_sessions_on_forwarding_changed(sender: Any, account_id: int, **kwargs: Any) -> None:
    # After the change commits, and off the admin's request: the worker ends the CLI's own sessions
    # to a port taken off the account (services.withdrawn). A send lost with the broker is found by
    # the periodic run of the same task.
    task_send_on_commit("end_withdrawn_sessions", account_id)


@receiver(account_cli_sessions_recorded, dispatch_uid="requests-end-direct-ssh-sessions-on-cli-sessions-recorded")
def end_direct_ssh_sessions_on_cli_sessions_recorded(sender: Any, account_id: int, **kwargs: Any) -> None:
    # The same task: it also ends the SSH sessions the CLI holds itself on an account whose CLI
    # sessions are now recorded (services.withdrawn), and its periodic run finds a send that was lost.
    task_send_on_commit("end_withdrawn_sessions", account_id)
    # And the hosts stop trusting the person's own certificates, those issued while the account was
    # direct too: the live grants' lines are rewritten without the direct principal
    # (provisioning.upkeep); the periodic run of the same task finds a send that was lost.
    task_send_on_commit("bind_grant_keys")


@receiver(account_sessions_moderated, dispatch_uid="requests-end-unwatched-sessions-on-sessions-moderated")
def end_unwatched_sessions_on_sessions_moderated(sender: Any, account_id: int, **kwargs: Any) -> None:
    # The same task: it also ends every session the CLI holds itself, and those started with the
    # requests' AWS credentials, on an account whose sessions are now moderated (no approver could
    # watch them: services.withdrawn); its periodic run finds a send that was lost.
    task_send_on_commit("end_withdrawn_sessions", account_id)
    # The hosts stop trusting the person's own certificates (as above, for recorded CLI sessions).
    task_send_on_commit("bind_grant_keys")


@receiver(account_regions_taken_off, dispatch_uid="requests-end-sessions-on-regions-taken-off")
def end_sessions_on_regions_taken_off(sender: Any, account_id: int, **kwargs: Any) -> None:
    # The same task: it also ends the sessions the CLI holds itself on an instance in a region taken
    # off the account (services.withdrawn), and its periodic run finds a send that was lost.
    task_send_on_commit("end_withdrawn_sessions", account_id)


@receiver(api_tokens_revoked, dispatch_uid="requests-end-token-sessions-on-tokens-revoked")
def end_token_sessions_on_tokens_revoked(
    sender: Any, token_ids: list[int], user_ids: list[int] | None = None, reason: str = "", **kwargs: Any
) -> None:
    # After the revocation commits, and off the request that revoked: the worker ends the Session
    # Manager sessions those tokens started, which the CLI holds itself (services.withdrawn.tokens).
    # A send lost with the broker is found by the periodic run of end_all_withdrawn_sessions.
    if token_ids:
        task_send_on_commit("end_token_sessions", sorted(token_ids), sorted(user_ids or []), reason)


@receiver(approval_policy_saved, dispatch_uid="requests-recheck-on-approval-policy-saved")
def recheck_live_requests_on_approval_policy_saved(sender: Any, account_id: int, **kwargs: Any) -> None:
    # In the transaction that saved the policy: what it revokes, rejects or shortens commits, or
    # rolls back, with it (the fleet's work and the mails are queued for after the commit).
    services.access_requests_policy_changed(account_id=account_id)
