"""Terminals whose web process is gone: sealed by the sweep (a Celery beat task,
``workers.tasks.finalise_orphaned_terminals``).

An open terminal's web process writes ``heartbeat_at`` every few seconds (with each chunk and on
its timer). When it has not for ``PASSPORT_RECORDING_STALE_SECONDS`` the process is presumed dead
(killed, out of memory, its host lost): what its recording kept in storage is sealed as partial
(failed if nothing was kept), its Session Manager session is terminated through the fleet
interface, and the Logbook says so.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from terminal import services
from terminal.models import RecordingState, TerminalSession
from terminal.recorder import recording_kept
from terminal.recording import clock

logger = logging.getLogger(__name__)


def terminals_orphaned(*, now: datetime | None = None) -> list[TerminalSession]:
    """Open terminals whose web process has been silent for longer than the stale limit."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.PASSPORT_RECORDING_STALE_SECONDS)
    return list(
        TerminalSession.objects.filter(ended_at__isnull=True)
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))
        .select_related("grant__instance", "grant__request__account", "user")
        .order_by("pk")
    )


def terminal_orphan_finalise(*, session: TerminalSession) -> TerminalSession:
    """Seal one orphaned terminal with what its recording kept, and end its Session Manager session."""
    terminated = False
    if session.ssm_session_id:
        try:
            services.ssh_session_terminate(grant=session.grant, ssm_session_id=session.ssm_session_id)
            terminated = True
        except Exception:
            logger.warning("sweep: TerminateSession %s failed", session.ssm_session_id, exc_info=True)
    last_heard = session.heartbeat_at or session.started_at
    reason = f"The web process serving this terminal stopped (last heard from at {last_heard:%Y-%m-%d %H:%M:%S} UTC)."
    if session.recording_path:
        kept = recording_kept(session)
        state = RecordingState.PARTIAL if kept.chunks else RecordingState.FAILED
        note = (
            f"The web process stopped; the recording stops at {clock(kept.seconds)}."
            if kept.chunks
            else "The web process stopped before any of the recording was stored."
        )
        digest, seconds, transcript = kept.sha256, kept.seconds, kept.transcript
    else:
        state, note, digest, seconds, transcript = RecordingState.FAILED, session.recording_note, "", None, None
    return services.terminal_session_end(
        session=session,
        reason=reason,
        bytes_in=session.bytes_in,
        bytes_out=session.bytes_out,
        recording_sha256=digest,
        recording_state=state,
        recording_note=note,
        recorded_seconds=seconds,
        transcript=transcript,
        by_person=False,
        extra={"sealed_by": "sweep", "ssm_session_terminated": terminated, "last_heartbeat": last_heard.isoformat()},
    )


def terminals_finalise_orphaned(*, now: datetime | None = None) -> int:
    """The sweep: seal every orphaned terminal; returns how many it sealed."""
    sealed = 0
    for session in terminals_orphaned(now=now):
        try:
            terminal_orphan_finalise(session=session)
            sealed += 1
        except Exception:
            logger.exception("sweep: could not seal orphaned terminal %s", session.pk)
    return sealed
