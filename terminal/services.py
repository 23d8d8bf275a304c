"""The browser terminal's business rules: who may open one, one-time tickets, session records,
closing open terminals when their request ends."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Sequence
from datetime import timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db import transaction
from django.utils import timezone

from accounts import permissions
from accounts.authentication import hash_token
from accounts.models import User
from accounts.session_lifetime import session_data_past_limit
from fleet import fleet_for
from requests_app.models import EndReason, Grant, GrantStatus, Instance, RequestStatus
from requests_app.services.grant_log import grant_logbook_append
from requests_app.services.lifecycle import instance_problem
from terminal.models import Client, RecordingChunk, RecordingState, SessionKind, TerminalSession, TerminalTicket
from terminal.recorder import recording_kept
from terminal.slots import SessionLimitReached, session_refused_over_limit, session_slot_take
from terminal.storage import recording_path_is_chunked
from terminal.transcript import Transcript

logger = logging.getLogger(__name__)

TICKET_SECONDS = 60

END_MESSAGES: dict[str, str] = {
    EndReason.COMPLETED: "The access request was completed; this terminal is closed.",
    EndReason.EXPIRED: "The access request expired; this terminal is closed.",
    EndReason.FAILED: "The access request was ended; this terminal is closed.",
    EndReason.REVOKED: "You are no longer an Admin of the account: the access was revoked; this terminal is closed.",
}


SIGNED_OUT_MESSAGE = "You signed out."
DEACTIVATED_MESSAGE = "Your Passport account was deactivated; this terminal is closed."
SIGN_IN_REVOKED_MESSAGE = "This CLI sign-in was revoked; this session is closed."


def request_group(request_id: int) -> str:
    """The channel-layer group of every open terminal of one access request."""
    return f"terminal-request-{int(request_id)}"


def user_group(user_id: int) -> str:
    """The channel-layer group of every open terminal of one person (all their browsers)."""
    return f"terminal-user-{int(user_id)}"


def token_group(token_id: int) -> str:
    """The channel-layer group of every CLI proxy connection that signed in with one ApiToken: its
    ``cli.sign_in_revoked`` (terminal.proxy.consumer)."""
    return f"terminal-token-{int(token_id)}"


def session_group(session_id: int) -> str:
    """The channel-layer group of one open session (``TerminalSession`` pk), browser or CLI: its
    ``terminal.close`` (ended by a watcher) and the live feed's own messages (terminal.live)."""
    return f"terminal-session-{int(session_id)}"


def watch_group(session_id: int) -> str:
    """The channel-layer group of the people watching one session: its output as it is recorded."""
    return f"terminal-watch-{int(session_id)}"


def terminal_unavailable_reason(*, grant: Grant, user: User) -> str | None:
    """Why this person cannot open a terminal on this grant right now, or None."""
    access_request = grant.request
    refusal = permissions.use_access_refusal(user, access_request)
    if refusal:
        return refusal
    if grant.instance.platform != Instance.Platform.LINUX:
        return "The browser terminal is for Linux instances; Windows access uses RDP."
    if access_request.status != RequestStatus.ACTIVE:
        return f"The request is not active (it is {access_request.get_status_display().lower()})."
    if grant.status != GrantStatus.READY:
        return f"The user on this instance is not ready (it is {grant.get_status_display().lower()})."
    instance = grant.instance
    if instance.ping_status != "Online":
        return f"The instance is offline: Systems Manager reports {instance.ping_status or 'no ping status'}."
    return instance_problem(instance)


def ticket_issue(*, user: User, grant: Grant) -> str:
    """A one-time connection token for this person and grant, valid for ``TICKET_SECONDS``."""
    token = secrets.token_urlsafe(32)
    TerminalTicket.objects.filter(expires_at__lt=timezone.now() - timedelta(hours=1)).delete()
    TerminalTicket.objects.create(
        token_hash=hash_token(token),
        user=user,
        grant=grant,
        expires_at=timezone.now() + timedelta(seconds=TICKET_SECONDS),
    )
    return token


def ticket_consume(*, token: str, user: User, grant_id: int) -> bool:
    """Use a ticket once: True only for an unused, unexpired ticket of this person and grant."""
    if not token or not user.is_authenticated:
        return False
    used = TerminalTicket.objects.filter(
        token_hash=hash_token(token), user=user, grant_id=grant_id, used_at__isnull=True, expires_at__gt=timezone.now()
    ).update(used_at=timezone.now())
    return used == 1


def recording_relative_path(*, grant: Grant) -> str:
    now = timezone.now()
    return f"recordings/{now:%Y/%m/%d}/grant-{grant.pk}-{now:%H%M%S}-{secrets.token_hex(4)}.cast"


def recording_absolute_path(relative: str) -> Path:
    return Path(settings.MEDIA_ROOT) / relative


def ssh_session_terminate(*, grant: Grant, ssm_session_id: str) -> None:
    fleet_for(grant.request.account).terminate_session(ssm_session_id, grant.instance.region)


def terminal_session_start(
    *,
    user: User,
    grant: Grant,
    ssm_session_id: str,
    recording_path: str,
    unrecorded: str = "",
    client: str = Client.BROWSER,
    kind: str = SessionKind.SHELL,
    command: str = "",
    slot_id: int | None = None,
    environment: dict[str, str] | None = None,
) -> TerminalSession:
    """Record an open terminal; ``unrecorded`` says why it runs without a recording (policy "allow").

    ``client`` is "cli" for a session through the recording SSH proxy (terminal.proxy), whose
    ``kind`` may be "exec" with the ``command`` line the client sent (kept as data, never run here),
    and whose ``environment`` (the LANG / LC_* values passed on to the instance) ``terminal.started`` lists.
    The row takes the place of the session's ``slot_id`` (terminal.slots; a CLI connection's slot
    stays the connection's, and the row names it); without one that counts the cap on open
    sessions is checked here, and SessionLimitReached raised (and written down) above it.
    """
    try:
        with transaction.atomic():
            session_slot_take(user=user, grant=grant, client=client, slot_id=slot_id)
            return _terminal_session_create(
                user=user, grant=grant, ssm_session_id=ssm_session_id, recording_path=recording_path,
                unrecorded=unrecorded, client=client, kind=kind, command=command,
                connection_slot=slot_id if client == Client.CLI else None, environment=environment or {},
            )  # fmt: skip
    except SessionLimitReached as refused:
        session_refused_over_limit(user=user, grant=grant, refused=refused)
        raise


def _terminal_session_create(
    *,
    user: User,
    grant: Grant,
    ssm_session_id: str,
    recording_path: str,
    unrecorded: str,
    client: str,
    kind: str,
    command: str,
    connection_slot: int | None,
    environment: dict[str, str],
) -> TerminalSession:
    with transaction.atomic():
        session = TerminalSession.objects.create(
            connection_slot=connection_slot,
            client=client,
            kind=kind,
            command=command,
            user=user,
            grant=grant,
            ssm_session_id=ssm_session_id,
            recording_path="" if unrecorded else recording_path,
            heartbeat_at=timezone.now(),
            recording_state=RecordingState.FAILED if unrecorded else RecordingState.RECORDING,
            recording_note=unrecorded[:256],
        )
        grant_logbook_append(
            grant,
            "terminal.started",
            {
                "terminal_session": session.pk,
                "username": grant.username,
                "ssm_session_id": ssm_session_id,
                **({"client": client, "kind": kind} if client != Client.BROWSER else {}),
                **({"command": command} if command else {}),
                **({"environment": dict(environment)} if environment else {}),
            },
            actor=user,
        )
        if unrecorded:
            grant_logbook_append(
                grant, "terminal.unrecorded", {"terminal_session": session.pk, "reason": unrecorded}, actor=user
            )
    return session


def terminal_refused_unrecordable(*, user: User, grant: Grant, problem: str) -> None:
    """A terminal was refused because its recording could not be stored (policy "refuse")."""
    grant_logbook_append(
        grant, "terminal.refused", {"reason": "recording storage unavailable", "problem": problem[:200]}, actor=user
    )


def terminal_recording_stopped(*, session: TerminalSession, problem: str, seconds: float, continues: bool) -> None:
    """Storage failed mid-session: the Logbook says from when the terminal is unrecorded."""
    action = "terminal.unrecorded" if continues else "terminal.recording_failed"
    grant_logbook_append(
        session.grant,
        action,
        {"terminal_session": session.pk, "reason": problem[:200], "recorded_seconds": round(seconds, 3)},
        actor=session.user,
    )


def terminal_session_end(
    *,
    session: TerminalSession,
    reason: str,
    bytes_in: int,
    bytes_out: int,
    recording_sha256: str,
    recording_state: str = RecordingState.COMPLETE,
    recording_note: str = "",
    recorded_seconds: float | None = None,
    transcript: Transcript | None = None,
    by_person: bool = True,
    extra: dict[str, object] | None = None,
    exit_status: int | None = None,
) -> TerminalSession:
    """Seal a terminal's record once; a second sealing (the web process and the sweep racing)
    changes nothing and returns the record as the first left it."""
    grant = session.grant
    if transcript is None:
        transcript = recording_transcript(session=session)
    with transaction.atomic():
        locked = TerminalSession.objects.select_for_update().get(pk=session.pk)
        if locked.ended_at is not None:
            return locked
        if locked.recording_state == RecordingState.FAILED and not recording_sha256:
            recording_note = recording_note or locked.recording_note  # it ran unrecorded from the start
        session.ended_at = timezone.now()
        session.end_reason = reason[:256]
        session.bytes_in = bytes_in
        session.bytes_out = bytes_out
        session.recording_sha256 = recording_sha256
        session.recording_state = recording_state
        session.recording_note = recording_note[:256]
        session.recorded_seconds = recorded_seconds
        session.transcript = transcript.output
        session.transcript_input = transcript.input
        session.transcript_index = transcript.index
        session.exit_status = exit_status
        session.save(
            update_fields=[
                "ended_at", "end_reason", "exit_status", "bytes_in", "bytes_out", "recording_sha256", "recording_state",
                "recording_note", "recorded_seconds", "transcript", "transcript_input", "transcript_index",
            ]
        )  # fmt: skip
        detail: dict[str, object] = {
            "terminal_session": session.pk,
            "reason": reason,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "recording": session.recording_path,
            "recording_sha256": recording_sha256,
            "recording_state": recording_state,
        }
        if recording_sha256 and recording_path_is_chunked(session.recording_path):
            # How many chunks the digest covers: rows removed from the manifest later show (terminal.recordings_check).
            detail["recording_chunks"] = RecordingChunk.objects.filter(session_id=session.pk).count()
        if recording_note:
            detail["recording_note"] = recording_note[:256]
        if recorded_seconds is not None:
            detail["recorded_seconds"] = round(recorded_seconds, 3)
        if locked.client != Client.BROWSER:
            detail.update({"client": locked.client, "kind": locked.kind})
        if exit_status is not None:
            detail["exit_status"] = exit_status
        detail.update(extra or {})
        grant_logbook_append(grant, "terminal.ended", detail, actor=session.user if by_person else None)
    return session


def recording_transcript(*, session: TerminalSession) -> Transcript:
    """The searchable text of what was kept of a recording; empty (and logged) if storage cannot
    be read, so a storage problem never stops a terminal from being recorded as ended."""
    if not session.recording_path:
        return Transcript()
    try:
        return recording_kept(session).transcript
    except Exception:
        logger.exception("could not read the recording of terminal session %s for its transcript", session.pk)
        return Transcript()


def recording_transcript_refresh(*, session: TerminalSession) -> str | None:
    """Re-extract a sealed recording's text (``manage.py terminal_transcripts``); None when done,
    else why not.

    The searchable text is part of the evidence: it is replaced only from a recording that
    storage gives back whole and that matches the digest sealed with it, never from a part of
    one or from a file changed since, and each replacement is in the Logbook.
    """
    if not session.recording_path:
        return "nothing was recorded"
    kept = recording_kept(session)
    if kept.problem or not kept.chunks:
        return kept.problem or "nothing is kept in storage"
    if session.recording_sha256 and not hmac.compare_digest(kept.sha256, session.recording_sha256):
        return "the recording in storage does not match the SHA-256 sealed with it"
    transcript = kept.transcript
    TerminalSession.objects.filter(pk=session.pk).update(
        transcript=transcript.output, transcript_input=transcript.input, transcript_index=transcript.index
    )
    detail: dict[str, object] = {
        "terminal_session": session.pk,
        "of": session.user.username,
        "recording_sha256": session.recording_sha256,
    }
    grant_logbook_append(session.grant, "recording.reindexed", detail, actor=None)
    return None


def recording_viewed(*, session: TerminalSession, user: User, what: str, sha256_ok: bool | None = None) -> None:
    """Record that a person watched (``what="page"``) or fetched (``what="cast"``) a recording.

    ``sha256_ok`` is what the page's check of the file found; the cast download that follows
    the page is not hashed again.
    """
    detail: dict[str, object] = {
        "terminal_session": session.pk,
        "of": session.user.username,
        "what": what,
        "recording_sha256": session.recording_sha256,
    }
    if sha256_ok is not None:
        detail["sha256_ok"] = sha256_ok
    grant_logbook_append(session.grant, "recording.viewed", detail, actor=user)


def recording_missing(*, session: TerminalSession, user: User, problem: str) -> None:
    """Record that a person asked for a recording storage failed to give back (``recording.missing``:
    a storage error, or a file made before chunks not in the storage), instead of a
    ``recording.viewed`` whose failed digest check would read like a changed recording."""
    detail: dict[str, object] = {
        "terminal_session": session.pk,
        "of": session.user.username,
        "what": "page",
        "recording_sha256": session.recording_sha256,
        "problem": problem[:500],
    }
    grant_logbook_append(session.grant, "recording.missing", detail, actor=user)


def recording_removed(*, session: TerminalSession, user: User, problem: str) -> None:
    """Record that a person asked for a recording part of which was removed after it was sealed
    (``recording.removed``): a chunk storage says does not exist, or manifest rows gone."""
    detail: dict[str, object] = {
        "terminal_session": session.pk,
        "of": session.user.username,
        "what": "page",
        "recording_sha256": session.recording_sha256,
        "problem": problem[:500],
    }
    grant_logbook_append(session.grant, "recording.removed", detail, actor=user)


def terminals_may_be_open(*, request_id: int) -> bool:
    """Whether a terminal of this request is open or opening (a ticket consumed moments ago)."""
    recently = timezone.now() - timedelta(minutes=5)
    return (
        TerminalSession.objects.filter(grant__request_id=request_id, ended_at__isnull=True).exists()
        or TerminalTicket.objects.filter(grant__request_id=request_id, used_at__gte=recently).exists()
    )


def terminals_may_be_open_among(*, request_ids: list[int]) -> set[int]:
    """``terminals_may_be_open`` for many requests in two queries: those of them that may have one."""
    recently = timezone.now() - timedelta(minutes=5)
    sessions = TerminalSession.objects.filter(grant__request_id__in=request_ids, ended_at__isnull=True)
    tickets = TerminalTicket.objects.filter(grant__request_id__in=request_ids, used_at__gte=recently)
    return {
        *sessions.values_list("grant__request_id", flat=True),
        *tickets.values_list("grant__request_id", flat=True),
    }


def terminal_still_allowed(*, grant: Grant) -> bool:
    """Re-read after a session is recorded: an ending (or the person's deactivation) committed
    meanwhile must not be missed."""
    return Grant.objects.filter(
        pk=grant.pk,
        status=GrantStatus.READY,
        request__status=RequestStatus.ACTIVE,
        request__requester__is_active=True,
    ).exists()


def terminals_close_for_request(*, request_id: int, end_reason: str) -> None:
    """Tell every open terminal of this request to close (runs after the ending commits)."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = END_MESSAGES.get(end_reason, "The access request has ended; this terminal is closed.")
    if (
        end_reason == EndReason.REVOKED
        and Grant.objects.filter(request_id=request_id, request__requester__is_active=False).exists()
    ):
        message = DEACTIVATED_MESSAGE  # revoked because the person was deactivated, not for their role
    try:
        async_to_sync(layer.group_send)(request_group(request_id), {"type": "terminal.close", "reason": message})
    except Exception:
        # The request has ended regardless; its certificates expire and cleanup removes the user,
        # which ends the shell. A channel-layer outage must not fail the ending.
        logger.exception("could not notify the open terminals of request %s", request_id)


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


def terminal_session_signed_in(*, session_key: str | None, user_id: int) -> bool:
    """Whether this browser session still exists, still belongs to this person, who is still active
    (not deactivated since: Django's own session check would say so only at the next page), and is
    not past its fixed lifetime."""
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
    active = {
        str(pk)
        for pk in User.objects.filter(pk__in={user_id for _, user_id in pairs}, is_active=True).values_list(
            "pk", flat=True
        )
    }
    # A session past its fixed lifetime (accounts.session_lifetime) is signed out at its next use;
    # an open terminal, which never uses it again, ends at that time too.
    return {
        (key, user_id): bool(key)
        and str(user_id) in active
        and str(data.get(key, {}).get(SESSION_KEY, "")) == str(user_id)
        and not session_data_past_limit(data=data.get(key, {}))
        for key, user_id in pairs
    }
