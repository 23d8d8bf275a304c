"""Terminals whose web process is gone: sealed by the sweep (a Celery beat task,
``workers.tasks.finalise_orphaned_terminals``).

An open terminal's web process writes ``heartbeat_at`` every few seconds (with each chunk and on
its timer). When it has not for ``PASSPORT_RECORDING_STALE_SECONDS`` the process is presumed dead
(killed, out of memory, its host lost): what its recording kept in storage is sealed as partial
(failed if nothing was kept), its Session Manager session is terminated through the fleet
interface, and the Logbook says so.

What is sealed is what storage gives back. When it fails to give back a chunk (a timeout, a 5xx)
that is the storage's blip, not where the recording ends: sealing then would put a digest of a
part of an intact recording in the Logbook, and the recording would read as changed once storage
answered again. So the terminal is left for a later sweep (its Session Manager session is ended
all the same), until it has been silent for ``PASSPORT_RECORDING_SWEEP_UNREADABLE_SECONDS``; then
what could be read is sealed, the note naming the storage failure, so none stays open forever.

The CLI proxy's forwards (``ProxyForward``) beat the same way while open: one silent past the same
limit is ended on record, its ``forward.closed`` saying ``"reason": "interrupted"``, when it was last
heard from, and that its bytes are not known (``forwards_finalise_orphaned``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from terminal import services
from terminal.models import ProxyForward, RecordingState, TerminalSession, heartbeat_cutoff, heartbeat_silent_since
from terminal.recorder import KeptRecording, recording_kept
from terminal.recording import clock
from terminal.services.forwards import forward_target, proxy_forward_end

logger = logging.getLogger(__name__)


def terminals_orphaned(*, now: datetime | None = None) -> list[TerminalSession]:
    """Open terminals whose web process has been silent for longer than the stale limit."""
    return list(
        TerminalSession.objects.filter(ended_at__isnull=True)
        .filter(heartbeat_silent_since(heartbeat_cutoff(now)))
        .select_related("grant__instance", "grant__request__account", "user")
        .order_by("pk")
    )


def terminal_orphan_finalise(*, session: TerminalSession, now: datetime | None = None) -> TerminalSession | None:
    """Seal one orphaned terminal with what its recording kept, and end its Session Manager session;
    None when storage could not be read and it is left for a later sweep, or when it was ended or
    heard from since the sweep listed it (read again on its locked row just before it is ended, and
    again as it is sealed: its web process was only slow)."""
    cutoff = heartbeat_cutoff(now)
    if not _still_silent(session, cutoff):
        logger.info("sweep: terminal %s was heard from again or ended; left alone", session.pk)
        return None
    terminated = False
    if session.ssm_session_id:
        try:
            services.ssh_session_terminate(grant=session.grant, ssm_session_id=session.ssm_session_id)
            terminated = True
        except Exception:
            logger.warning("sweep: TerminateSession %s failed", session.ssm_session_id, exc_info=True)
    last_heard = session.heartbeat_at or session.started_at
    reason = f"The web process serving this terminal stopped (last heard from at {last_heard:%Y-%m-%d %H:%M:%S} UTC)."
    chunks: int | None = None
    if session.recording_path:
        kept = recording_kept(session)
        if kept.missing:
            limit = (now or timezone.now()) - timedelta(seconds=settings.PASSPORT_RECORDING_SWEEP_UNREADABLE_SECONDS)
            if last_heard >= limit:
                logger.warning("sweep: terminal %s left for a later sweep: %s", session.pk, kept.problem)
                return None
        state = RecordingState.PARTIAL if kept.chunks else RecordingState.FAILED
        note = _orphan_note(kept)
        digest, seconds, transcript, chunks = kept.sha256, kept.seconds, kept.transcript, kept.chunks
    else:
        state, note, digest, seconds, transcript = RecordingState.FAILED, session.recording_note, "", None, None
    sealed = services.terminal_session_end(
        session=session,
        reason=reason,
        bytes_in=session.bytes_in,
        bytes_out=session.bytes_out,
        recording_sha256=digest,
        recording_state=state,
        recording_note=note,
        recorded_seconds=seconds,
        recording_chunks=chunks,
        transcript=transcript,
        by_person=False,
        extra={"sealed_by": "sweep", "ssm_session_terminated": terminated, "last_heartbeat": last_heard.isoformat()},
        silent_before=cutoff,
    )
    return sealed if sealed.ended_at is not None else None


def _still_silent(session: TerminalSession, cutoff: datetime) -> bool:
    """Is the terminal still open and silent? Read on its row's lock, so a heartbeat being written
    is waited for rather than missed."""
    with transaction.atomic():
        return (
            TerminalSession.objects.select_for_update()
            .filter(pk=session.pk, ended_at__isnull=True)
            .filter(heartbeat_silent_since(cutoff))
            .exists()
        )


def _orphan_note(kept: KeptRecording) -> str:
    if kept.missing:  # still unreadable past the limit: said as the storage's failure, not the process's
        unread = f"recording storage could not be read when this was sealed: {kept.problem}"
        if kept.chunks:
            return f"The web process stopped and {unread}; what is sealed stops at {clock(kept.seconds)}."
        return f"The web process stopped and {unread}; none of the recording is sealed."
    if kept.chunks:
        return f"The web process stopped; the recording stops at {clock(kept.seconds)}."
    return "The web process stopped before any of the recording was stored."


def terminals_finalise_orphaned(*, now: datetime | None = None) -> int:
    """The sweep: seal every orphaned terminal; returns how many it sealed."""
    sealed = 0
    for session in terminals_orphaned(now=now):
        try:
            if terminal_orphan_finalise(session=session, now=now) is not None:
                sealed += 1
        except Exception:
            logger.exception("sweep: could not seal orphaned terminal %s", session.pk)
    return sealed


# Why the sweep ended a forward (``forward.closed``): its web process stopped while it was open.
FORWARD_INTERRUPTED = "interrupted"


def forwards_orphaned(*, now: datetime | None = None) -> list[ProxyForward]:
    """Open forwards whose web process has been silent for longer than the stale limit."""
    return list(
        ProxyForward.objects.filter(ended_at__isnull=True)
        .filter(heartbeat_silent_since(heartbeat_cutoff(now)))
        .select_related("grant__instance", "grant__request__account", "user")
        .order_by("started_at", "pk")[:500]
    )


def forward_orphan_end(*, forward: ProxyForward, now: datetime | None = None) -> bool:
    """End one orphaned forward on record; False when it was ended already (or beat again since listed)."""
    last_heard = forward.heartbeat_at or forward.started_at
    return proxy_forward_end(
        forward_id=forward.pk,
        grant=forward.grant,
        user=forward.user,
        host=forward.host,
        by_sweep=True,
        now=now,
        detail={
            "client": "cli",
            "target": forward_target(forward.host, forward.port),
            "port": forward.port,
            "reason": FORWARD_INTERRUPTED,
            "sealed_by": "sweep",
            "last_heartbeat": last_heard.isoformat(),
            "note": "The web process serving this forward stopped; its bytes are not known.",
        },
    )


def forwards_finalise_orphaned(*, now: datetime | None = None) -> int:
    """The sweep: end on record every forward whose web process is gone; returns how many it ended."""
    ended = 0
    for forward in forwards_orphaned(now=now):
        try:
            ended += forward_orphan_end(forward=forward, now=now)
        except Exception:
            logger.exception("sweep: could not end orphaned forward %s", forward.pk)
    return ended
