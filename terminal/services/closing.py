"""Open terminals: which may still be open, and closing them when their request ends, their
person signs out or is deactivated, their CLI sign-in is revoked, the CA key that signed a
certificate they logged in with is retired, or their instance's region is taken off its account
(``grants_region_refusals``; the ending on record in ``regions``); and closing the CLI proxy's open
forwards whose target an admin took off the account."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from accounts.models import User
from accounts.session_lifetime import session_data_past_limit
from core.text import visible
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, RequestStatus, in_force_q
from requests_app.services.grant_log import grant_logbook_append
from sshca.models import IssuedCertificate
from terminal.models import SessionSlot, TerminalSession, TerminalTicket
from terminal.services.sessions import END_MESSAGES, request_group, token_group, user_group

logger = logging.getLogger(__name__)

SIGNED_OUT_MESSAGE = "You signed out."
DEACTIVATED_MESSAGE = "Your Passport account was deactivated; this terminal is closed."
# A password change signs out every session of the person but the one that changed it (Django's
# session auth hash); that one's key is cycled, which ends its terminals too.
CREDENTIALS_CHANGED_MESSAGE = "Your password was changed; this terminal is closed."
# Withdrawing an identity provider ends the sessions it signed in (accounts.saml.withdrawal).
IDP_WITHDRAWN_MESSAGE = "The identity provider you signed in through was withdrawn; this terminal is closed."
SIGN_IN_REVOKED_MESSAGE = "This CLI sign-in was revoked; this session is closed."
SIGN_IN_EXPIRED_MESSAGE = (
    "This CLI sign-in has expired; this session is closed. Sign in again with `passport auth login`."
)
ENDED_MESSAGE = "The access request has ended; this terminal is closed."
CA_KEY_RETIRED_MESSAGE = "Passport retired the CA key that signed its login certificate; this terminal is closed."
# ``session.terminated``'s reason for a connection ended so (``terminal_ended_for_ca_key``).
CA_KEY_RETIRED = "ca_key_retired"


def terminals_may_be_open(*, request_id: int) -> bool:
    """Whether a terminal of this request is open or opening (a ticket consumed moments ago), or a
    CLI proxy connection: one with only ``ssh -L`` forwards, or idle between commands (a
    ControlMaster), has no open session row, only its place under the cap (terminal.slots), which it
    holds as long as it is open. Any slot counts, one a dead process left too: a message to a group
    nobody is in costs next to nothing, a connection not told to close outlives its request."""
    recently = timezone.now() - timedelta(minutes=5)
    return (
        TerminalSession.objects.filter(grant__request_id=request_id, ended_at__isnull=True).exists()
        or TerminalTicket.objects.filter(grant__request_id=request_id, used_at__gte=recently).exists()
        or SessionSlot.objects.filter(grant__request_id=request_id).exists()
    )


def terminals_may_be_open_among(*, request_ids: list[int]) -> set[int]:
    """``terminals_may_be_open`` for many requests in three queries: those of them that may have one."""
    recently = timezone.now() - timedelta(minutes=5)
    sessions = TerminalSession.objects.filter(grant__request_id__in=request_ids, ended_at__isnull=True)
    tickets = TerminalTicket.objects.filter(grant__request_id__in=request_ids, used_at__gte=recently)
    connections = SessionSlot.objects.filter(grant__request_id__in=request_ids)
    return {
        *sessions.values_list("grant__request_id", flat=True),
        *tickets.values_list("grant__request_id", flat=True),
        *connections.values_list("grant__request_id", flat=True),
    }


def terminal_still_allowed(*, grant: Grant) -> bool:
    """Re-read after a session is recorded: an ending (or the person's deactivation) committed
    meanwhile must not be missed."""
    return Grant.objects.filter(
        in_force_q(prefix="request__"), pk=grant.pk, status=GrantStatus.READY, request__requester__is_active=True
    ).exists()


def region_taken_off_message(region: str) -> str:
    """What a session on an instance whose region was taken off its account closes with (the region
    is the inventory's, from the account's own list, made visible all the same)."""
    return (
        f"An admin took this instance's region ({visible(region)}) off its AWS account in Passport, "
        "so no session may run there; this terminal is closed."
    )


def grants_region_refusals(*, grant_ids: Sequence[int]) -> dict[int, str]:
    """Of these grants, those whose instance's region is no longer among its request's account's
    regions (as ``requests_app``'s ``instance_region_problem`` refuses a new session there), with the
    words their sessions close with; one query. Every open terminal and CLI proxy connection asks
    this every few seconds (terminal.rounds), should the change's message not have reached it."""
    rows = Grant.objects.filter(pk__in=set(grant_ids)).values_list(
        "pk", "instance__region", "request__account__regions"
    )
    refused: dict[int, str] = {}
    for pk, region, regions in rows:
        managed = regions if isinstance(regions, list) else []  # as AwsAccount.managed_regions reads it
        if region not in managed:
            refused[pk] = region_taken_off_message(region)
    return refused


def terminal_refusal(*, grant: Grant) -> str | None:
    """None while a new session or forward on this grant is allowed (``terminal_still_allowed``, and
    its instance's region still the account's: two queries); otherwise why not, in the words a
    terminal closes with: the request's own reason once it has ended, the person's deactivation, the
    user on the instance no longer ready, or the region taken off. The CLI proxy asks before each new
    channel of a connection opened earlier. Nothing of the instance (its name is anyone's who may tag
    it) is in the words."""
    if terminal_still_allowed(grant=grant):
        return grants_region_refusals(grant_ids=[grant.pk]).get(grant.pk)
    ended = request_ended_message(request_id=grant.request_id)
    if ended is not None:
        return ended
    if Grant.objects.filter(pk=grant.pk, request__requester__is_active=False).exists():
        return DEACTIVATED_MESSAGE
    status = Grant.objects.filter(pk=grant.pk).values_list("status", flat=True).first()
    if status is None:
        return ENDED_MESSAGE
    label = GrantStatus(status).label.lower()
    return f"The user on this instance is not ready (it is {label}); this terminal is closed."


def terminals_close_for_request(*, request_id: int, end_reason: str) -> None:
    """Tell every open terminal of this request to close (runs after the ending commits)."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = _end_message(request_id=request_id, end_reason=end_reason)
    try:
        async_to_sync(layer.group_send)(request_group(request_id), {"type": "terminal.close", "reason": message})
    except Exception:
        # The request has ended regardless; its certificates expire and cleanup removes the user,
        # which ends the shell. A channel-layer outage must not fail the ending.
        logger.exception("could not notify the open terminals of request %s", request_id)


def _end_message(*, request_id: int, end_reason: str) -> str:
    message = END_MESSAGES.get(end_reason, ENDED_MESSAGE)
    if (
        end_reason == EndReason.REVOKED
        and Grant.objects.filter(request_id=request_id, request__requester__is_active=False).exists()
    ):
        message = DEACTIVATED_MESSAGE  # revoked because the person was deactivated, not for their role
    return message


def request_ended_message(*, request_id: int) -> str | None:
    """What a terminal of this request says as it closes, when the request is no longer active (as
    ``terminals_close_for_request`` tells it); None while it is. For a session whose instance side
    closed first: the ending's removal may end the Session Manager session before the channel
    layer's message arrives, and the person should still hear why. Past its end time it has expired,
    the expiry sweep run or not (``requests_ended_messages``)."""
    return requests_ended_messages(request_ids=[request_id]).get(request_id)


def requests_ended_messages(*, request_ids: Sequence[int]) -> dict[int, str]:
    """Of these requests, those over for the terminals still open on them, with what each says as it
    closes: no longer active (``request_ended_message``'s words), or still active past its end time
    (the expiry sweep has not ended it yet: "expired"), or gone. One query for them all, and one more
    for each revoked one. The CLI proxy's connections read it periodically, should the ending's
    ``terminal.close`` not reach them."""
    now = timezone.now()
    rows = {
        pk: (status, end_reason, expires_at)
        for pk, status, end_reason, expires_at in AccessRequest.objects.filter(pk__in=set(request_ids)).values_list(
            "pk", "status", "end_reason", "expires_at"
        )
    }
    ended: dict[int, str] = {}
    for request_id in request_ids:
        if request_id not in rows:
            ended[request_id] = ENDED_MESSAGE
            continue
        status, end_reason, expires_at = rows[request_id]
        if status != RequestStatus.ACTIVE:
            ended[request_id] = _end_message(request_id=request_id, end_reason=end_reason or "")
        elif expires_at is not None and expires_at <= now:  # as AccessRequest.in_force reads it
            ended[request_id] = END_MESSAGES[EndReason.EXPIRED]
    return ended


def terminals_close_for_user(*, user_id: int, reason: str = SIGNED_OUT_MESSAGE) -> None:
    """Tell every open terminal of this person to close (they signed out).

    Sent after the surrounding transaction commits. The consumer also checks its session every
    few seconds, so a terminal whose sign-in went away without this message closes all the same.
    """
    layer = get_channel_layer()
    if layer is None:
        return

    def send() -> None:
        try:
            async_to_sync(layer.group_send)(user_group(user_id), {"type": "terminal.close", "reason": reason})
        except Exception:
            # The session check in the consumer closes the terminals a little later.
            logger.exception("could not notify the open terminals of user %s", user_id)

    transaction.on_commit(send)


def terminals_close_for_tokens(*, token_ids: Sequence[int]) -> None:
    """Tell the CLI proxy connections of these revoked tokens to close (runs after the revocation
    commits). A connection that joined its token's group after this reads the token again itself."""
    layer = get_channel_layer()
    if layer is None:
        return
    for token_id in token_ids:
        try:
            async_to_sync(layer.group_send)(
                token_group(token_id), {"type": "cli.sign_in_revoked", "reason": SIGN_IN_REVOKED_MESSAGE}
            )
        except Exception:
            # The token is revoked regardless: no new connection or API call gets past it, and the
            # open one still ends with the request. A channel-layer outage must not fail the revocation.
            logger.exception("could not notify the CLI connections of token %s", token_id)


def terminals_close_for_ca_key(*, ca_key_id: int, fingerprint: str) -> None:
    """Tell the open terminals and CLI proxy connections of the active requests this CA key signed a
    certificate for that it was retired (runs after the retirement commits): each one whose own
    certificate (the CLI's, or the portal's login to the instance) it signed ends itself
    (``terminal.ca_key_retired``; sshd does not re-check a connection it let in)."""
    layer = get_channel_layer()
    if layer is None:
        return
    signed_for = IssuedCertificate.objects.filter(ca_key_id=ca_key_id, request_id__isnull=False)
    active = AccessRequest.objects.filter(
        status=RequestStatus.ACTIVE, pk__in=signed_for.values("request_id")
    ).values_list("pk", flat=True)
    message = {"type": "terminal.ca_key_retired", "fingerprint": fingerprint, "reason": CA_KEY_RETIRED_MESSAGE}
    for request_id in sorted(terminals_may_be_open_among(request_ids=list(active))):
        try:
            async_to_sync(layer.group_send)(request_group(request_id), message)
        except Exception:
            # The key is retired regardless: no host trusts it for a new login. An outage of the
            # channel layer must not fail the retirement; the CLI proxy's own periodic check ends its own.
            logger.exception("could not tell the open terminals of request %s of a retired CA key", request_id)


def terminal_ended_for_ca_key(
    *, grant: Grant, client: str, fingerprint: str, certificate: str, ssm_session_id: str
) -> None:
    """On record: an open terminal or CLI proxy connection was ended because the CA key that signed
    its ``certificate`` ("client": the CLI's, "login": the portal's login to the instance) was retired
    (``session.terminated``; its ``terminal.ended``, if it had a shell, follows with the message)."""
    detail: dict[str, object] = {
        "reason": CA_KEY_RETIRED,
        "fingerprint": fingerprint,
        "certificate": certificate,
        "client": client,
    }
    if ssm_session_id:
        detail["session_id"] = ssm_session_id
    grant_logbook_append(grant, "session.terminated", detail)


def cli_forwards_recheck_for_account(*, account_id: int) -> None:
    """Tell the CLI proxy connections of this account's active requests that its forwarding ports
    or destinations changed (runs after the change commits): each reads what is in force now and
    closes the open forwards no longer allowed (terminal.proxy.session). A forward opened after
    this reads them itself."""
    layer = get_channel_layer()
    if layer is None:
        return
    active = AccessRequest.objects.filter(account_id=account_id, status=RequestStatus.ACTIVE)
    for request_id in active.values_list("pk", flat=True):
        try:
            async_to_sync(layer.group_send)(request_group(request_id), {"type": "cli.forwarding_changed"})
        except Exception:
            # The account is changed regardless: new forwards read it, and bind_grant_keys narrows the
            # instance's permitopen. A channel-layer outage must not fail the admin's save.
            logger.exception("could not tell the CLI connections of request %s of a forwarding change", request_id)


def terminal_session_signed_in(*, session_key: str | None, user_id: int) -> bool:
    """Whether this browser session still exists, still belongs to this person, who is still active
    (not deactivated since: Django's own session check would say so only at the next page), still
    carries the hash of their current password (a password change signs out their other sessions,
    as Django's own check does at the next page), and is not past its fixed lifetime."""
    if not session_key:
        return False
    return terminal_sessions_signed_in(pairs=[(session_key, user_id)])[(session_key, user_id)]


def terminal_signed_out_reason(*, user_id: int) -> str:
    """What a terminal whose sign-in check failed says as it closes: deactivated, or signed out."""
    deactivated = User.objects.filter(pk=user_id, is_active=False).exists()
    return DEACTIVATED_MESSAGE if deactivated else SIGNED_OUT_MESSAGE


def terminal_sessions_signed_in(*, pairs: Sequence[tuple[str, int]]) -> dict[tuple[str, int], bool]:
    """``terminal_session_signed_in`` for many (session key, user id) pairs: with database-backed
    sessions, one query for them all."""
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    keys = {session_key for session_key, _ in pairs if session_key}
    data: dict[str, dict[str, Any]]
    if issubclass(store_class, DatabaseSessionStore):
        # As the store's own load(): an expired row counts as gone, data that does not decode as empty.
        rows = store_class.get_model_class().objects.filter(session_key__in=keys, expire_date__gt=timezone.now())
        decoder = store_class()
        found = rows.values_list("session_key", "session_data")
        data = {session_key: decoder.decode(encoded) for session_key, encoded in found}
    else:
        data = {session_key: store_class(session_key=session_key).load() for session_key in keys}
    people = User.objects.filter(pk__in={user_id for _, user_id in pairs}, is_active=True).only(
        "pk", "password", "security_stamp"
    )
    active = {str(user.pk): user for user in people}
    # A session past its fixed lifetime, or signed in through an identity provider no longer the one
    # it trusted then (accounts.session_lifetime), is signed out at its next use; an open terminal, which never uses
    # it again, ends at that time too.
    idp_trusts: dict[str, str | None] = {}
    return {
        (key, user_id): bool(key)
        and str(user_id) in active
        and str(data.get(key, {}).get(SESSION_KEY, "")) == str(user_id)
        and _password_hash_matches(user=active[str(user_id)], data=data.get(key, {}))
        and not session_data_past_limit(data=data.get(key, {}), idp_trusts=idp_trusts)
        for key, user_id in pairs
    }


def _password_hash_matches(*, user: User, data: dict[str, Any]) -> bool:
    """As django.contrib.auth.get_user: the session's hash of the password (and security stamp:
    accounts.session_stamps) it signed in with is the current one's, or that under one of
    SECRET_KEY_FALLBACKS (Django moves such a session on to the current key at its next page).
    A session without one counts as signed out, as there."""
    stored = data.get(HASH_SESSION_KEY)
    if not isinstance(stored, str) or not stored:
        return False
    if constant_time_compare(stored, user.get_session_auth_hash()):
        return True
    return any(constant_time_compare(stored, fallback) for fallback in user.get_session_auth_fallback_hash())
