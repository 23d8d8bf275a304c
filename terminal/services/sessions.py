"""The browser terminal's and the CLI proxy's session records: who may open one, one-time
tickets, the groups their processes listen on, and the record of each session from start to end."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Subquery
from django.http import Http404
from django.utils import timezone

from accounts import permissions
from accounts.authentication import hash_token
from accounts.models import User
from core.text import visible_excerpt
from fleet import fleet_for
from requests_app.models import EndReason, Grant, GrantStatus, Instance, RequestStatus
from requests_app.selectors import grant_get_for_session
from requests_app.services.grant_log import grant_logbook_append, grant_refusal_append
from requests_app.services.lifecycle import instance_problem
from terminal.models import Client, RecordingChunk, RecordingState, SessionKind, TerminalSession, TerminalTicket
from terminal.services.recordings import recording_transcript
from terminal.slots import SessionLimitReached, session_refused_over_limit, session_slot_take
from terminal.storage import recording_path_is_chunked
from terminal.transcript import Transcript

logger = logging.getLogger(__name__)

TICKET_SECONDS = 60
# Unused tickets one person holds per grant, at least: each load of the terminal page issues one, and
# its WebSocket uses it at once; past these the oldest go (a tab loaded long ago reloads for a new
# one). Never fewer than the person may have terminals open there (``unused_tickets_kept``).
UNUSED_TICKETS_KEPT = 5
# Expired tickets are kept this long (a connection refused just now reads as "expired", not unknown).
TICKET_KEPT_AFTER_EXPIRY = timedelta(hours=1)
# terminal.ended quotes the far end: a reason can carry an agent's channel_closed output or an
# instance sshd's refusal, and exit_signal is the signal name the sshd sent. Escaped and cut to
# these (core.text.visible_excerpt): a Logbook entry, not a copy of whatever a hostile host sends.
END_REASON_MAX_CHARS = 500
EXIT_SIGNAL_MAX_CHARS = 64

END_MESSAGES: dict[str, str] = {
    EndReason.COMPLETED: "The access request was completed; this terminal is closed.",
    EndReason.EXPIRED: "The access request expired; this terminal is closed.",
    EndReason.FAILED: "The access request was ended; this terminal is closed.",
    EndReason.REVOKED: "You are no longer an Admin of the account: the access was revoked; this terminal is closed.",
}


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
    if grant.platform != Instance.Platform.LINUX:
        return "The browser terminal is for Linux instances; Windows access uses RDP."
    status = access_request.status_at(timezone.now())
    if status != RequestStatus.ACTIVE:
        # Past its end time it reads as expired, whether or not the expiry sweep has run.
        return f"The request is not active (it is {RequestStatus(status).label.lower()})."
    if grant.status != GrantStatus.READY:
        return f"The user on this instance is not ready (it is {grant.get_status_display().lower()})."
    instance = grant.instance
    if instance.ping_status != "Online":
        return f"The instance is offline: Systems Manager reports {instance.ping_status or 'no ping status'}."
    return instance_problem(instance)


def unused_tickets_kept() -> int:
    """How many unused tickets of one person and grant are kept, the newest.

    Pages loaded at once (tabs restored, terminals opened in parallel) each hold a ticket before the
    first WebSocket spends its own. So no fewer than the sessions the person may have open on one
    grant: the oldest pruned are then never a page the cap would have let open, only pages it
    refuses anyway (saying why); fewer would refuse some of those pages instead.
    """
    return max(UNUSED_TICKETS_KEPT, settings.PASSPORT_MAX_SESSIONS_PER_GRANT)


def ticket_issue(*, user: User, grant: Grant) -> str:
    """A one-time connection token for this person and grant, valid for ``TICKET_SECONDS``."""
    token = secrets.token_urlsafe(32)
    ticket = TerminalTicket.objects.create(
        token_hash=hash_token(token),
        user=user,
        grant=grant,
        expires_at=timezone.now() + timedelta(seconds=TICKET_SECONDS),
    )
    unused = TerminalTicket.objects.filter(user=user, grant=grant, used_at__isnull=True)
    kept = unused_tickets_kept()
    # The oldest one kept, read alone: with a large cap, not every kept id on every page load.
    oldest_kept = unused.filter(pk__lte=ticket.pk).order_by("-pk").values_list("pk", flat=True)[kept - 1 : kept]
    unused.filter(pk__lt=Subquery(oldest_kept)).delete()
    return token


def tickets_purge(*, now: datetime | None = None) -> int:
    """Delete the tickets that expired more than ``TICKET_KEPT_AFTER_EXPIRY`` ago (the periodic sweep)."""
    deleted, _ = TerminalTicket.objects.filter(
        expires_at__lt=(now or timezone.now()) - TICKET_KEPT_AFTER_EXPIRY
    ).delete()
    return deleted


def ticket_consume(*, token: str, user: User, grant_id: int) -> bool:
    """Use a ticket once: True only for an unused, unexpired ticket of this person and grant."""
    if not token or not user.is_authenticated:
        return False
    used = TerminalTicket.objects.filter(
        token_hash=hash_token(token), user=user, grant_id=grant_id, used_at__isnull=True, expires_at__gt=timezone.now()
    ).update(used_at=timezone.now())
    return used == 1


def ticket_refusal(*, token: str, user: User, grant_id: int) -> str | None:
    """Why ``ticket_consume`` refused this person's ticket, for their page to show, and written to
    the Logbook (``terminal.refused``; the same refusal again within a window only counted).

    None for a grant they may not see: nothing of theirs to explain, and nothing written on it.
    """
    try:
        grant = grant_get_for_session(user=user, pk=grant_id)
    except Http404:
        return None
    ticket = (
        TerminalTicket.objects.filter(token_hash=hash_token(token), user=user, grant=grant).first() if token else None
    )
    if not token:
        code = "missing"
        message = "This connection carries no ticket: open the terminal from its page."
    elif ticket is None:
        # Pruned by newer pages' tickets, purged long after it expired, or never this person's here.
        code = "not valid"
        message = (
            "This page's one-time ticket is no longer valid: newer terminal pages of this instance "
            f"replaced it (the newest {unused_tickets_kept()} are kept), or it expired long ago. "
            "Reload the page to open a terminal."
        )
    elif ticket.used_at is not None:
        code = "used"
        message = "This page opened its terminal already: a page opens one. Reload the page to open another."
    else:
        code = "expired"
        message = f"This page's one-time ticket expired ({TICKET_SECONDS} s after the page loaded). Reload the page."
    grant_refusal_append(
        grant,
        "terminal.refused",
        user=user,
        refusal_key=f"ticket {code}:{grant.pk}",
        detail={"reason": f"ticket {code}", "client": Client.BROWSER, "grant": grant.pk},
    )
    return message


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
    term: str | None = None,
) -> TerminalSession:
    """Record an open terminal; ``unrecorded`` says why it runs without a recording (policy "allow").

    ``client`` is "cli" for a session through the recording SSH proxy (terminal.proxy), whose
    ``kind`` may be "exec" with the ``command`` line the client sent (kept as data, never run here),
    and whose ``environment`` (the LANG / LC_* values passed on to the instance) and ``term`` (the
    terminal type of its pty, TERM there; None without a pty) ``terminal.started`` lists.
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
                term=term,
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
    term: str | None,
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
                **({"term": term} if term is not None else {}),
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
    recording_chunks: int | None = None,
    transcript: Transcript | None = None,
    by_person: bool = True,
    extra: dict[str, object] | None = None,
    exit_status: int | None = None,
    exit_signal: str = "",
    silent_before: datetime | None = None,
) -> TerminalSession:
    """Seal a terminal's record once; a second sealing (the web process and the sweep racing)
    changes nothing and returns the record as the first left it. The sweep's (``silent_before``)
    seals only a terminal not heard from since then: one that beat again is returned unsealed.

    ``recording_chunks`` is how many chunks ``recording_sha256`` covers, as the caller hashed them
    (the uploader's count, the chunks the sweep read): the manifest may list more (a chunk whose
    row was written and whose upload then failed, one storage failed to give back). Without it the
    manifest's rows are counted. Once sealed, no chunk is stored into the session (terminal.recorder)."""
    # The row keeps the start of what the Logbook keeps, so the two still agree (terminal.sealing).
    reason = visible_excerpt(reason, END_REASON_MAX_CHARS)
    grant = session.grant
    if transcript is None:
        transcript = recording_transcript(session=session)
    with transaction.atomic():
        locked = TerminalSession.objects.select_for_update().get(pk=session.pk)
        if locked.ended_at is not None:
            return locked
        if silent_before is not None and (locked.heartbeat_at or locked.started_at) >= silent_before:
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
            detail["recording_chunks"] = (
                recording_chunks
                if recording_chunks is not None
                else RecordingChunk.objects.filter(session_id=session.pk).count()
            )
        if recording_note:
            detail["recording_note"] = recording_note[:256]
        if recorded_seconds is not None:
            detail["recorded_seconds"] = round(recorded_seconds, 3)
        if locked.client != Client.BROWSER:
            detail.update({"client": locked.client, "kind": locked.kind})
        if exit_status is not None:
            detail["exit_status"] = exit_status
        if exit_signal:
            detail["exit_signal"] = visible_excerpt(exit_signal, EXIT_SIGNAL_MAX_CHARS)
        detail.update(extra or {})
        grant_logbook_append(grant, "terminal.ended", detail, actor=session.user if by_person else None)
    return session
