"""Reading for the terminal: recordings, only what the person may see, else a 404 (grants are
read through requests_app.selectors)."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, F, Func, Q, QuerySet, Value
from django.db.models.sql.compiler import SQLCompiler
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts import permissions
from accounts.models import User
from audit.selectors import logbook_entry_first
from terminal import presence
from terminal.models import RecordingState, TerminalSession
from terminal.recorder import KeptRecording, recording_kept
from terminal.transcript import time_at

logger = logging.getLogger(__name__)

# --- recordings ---------------------------------------------------------------------------
SNIPPET_CHARS = 60


class _Contains(Func):
    """``column`` contains ``text``, ignoring case: ILIKE on PostgreSQL, which the pg_trgm GIN
    indexes of migration 0002 serve; ``UPPER() LIKE UPPER()`` elsewhere."""

    template = "(UPPER(%(expressions)s) ESCAPE '\\')"
    arg_joiner = ") LIKE UPPER("
    output_field = BooleanField()

    def __init__(self, column: str, text: str) -> None:
        super().__init__(F(column), Value("%" + connection.ops.prep_for_like_query(text) + "%"))

    def as_postgresql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="(%(expressions)s)", arg_joiner=" ILIKE ", **extra)


@dataclass(frozen=True)
class RecordingFilters:
    text: str = ""
    person: str = ""
    instance: str = ""
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class RecordingHit:
    session: TerminalSession
    # Where the text was found ("output" or "input"), the text around it, and when it appeared.
    where: str = ""
    before: str = ""
    match: str = ""
    after: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class RecordingCheck:
    """The stored file's SHA-256 against the one the Logbook recorded when the recording was sealed."""

    logbook_sha256: str
    file_sha256: str
    problem: str
    # The file (or a chunk of it) could not be read from storage: a missing file, not a changed one.
    missing: bool = False

    @property
    def ok(self) -> bool:
        return not self.problem


def _recordings(user: User) -> QuerySet[TerminalSession]:
    return TerminalSession.objects.visible_to(user).select_related("user", "grant__instance", "grant__request__account")


def recording_get(*, user: User, pk: int) -> TerminalSession:
    """The terminal session if this person may watch its recording; a 404 otherwise."""
    return get_object_or_404(_recordings(user), pk=pk)


def recording_search(*, user: User, filters: RecordingFilters, limit: int = 50) -> list[RecordingHit]:
    """Sealed recordings this person may watch, newest first, matching the filters.

    ``text`` is looked for in what was printed and in what was typed, ignoring case, with the
    terminal's escape sequences already removed (the transcript is stored when the recording is
    sealed). Each hit carries a snippet of its first match and the moment it appeared.
    """
    queryset = _recordings(user).filter(ended_at__isnull=False)
    if filters.person:
        queryset = queryset.filter(user__username__iexact=filters.person)
    if filters.instance:
        queryset = queryset.filter(
            Q(grant__instance__instance_id=filters.instance) | Q(grant__instance__name__iexact=filters.instance)
        )
    if filters.since:
        queryset = queryset.filter(started_at__gte=filters.since)
    if filters.until:
        queryset = queryset.filter(started_at__lte=filters.until)
    if not filters.text:
        return [RecordingHit(session=session) for session in queryset.defer(*_TRANSCRIPT_FIELDS)[:limit]]
    queryset = queryset.filter(_Contains("transcript", filters.text) | _Contains("transcript_input", filters.text))
    return [_hit(session, filters.text) for session in queryset[:limit]]


_TRANSCRIPT_FIELDS = ("transcript", "transcript_input", "transcript_index")


def _hit(session: TerminalSession, text: str) -> RecordingHit:
    index = session.transcript_index or {}
    wanted = text.casefold()
    for where, body, key in (("output", session.transcript, "o"), ("input", session.transcript_input, "i")):
        # casefold() can change lengths (ß -> ss); lower() keeps offsets aligned for slicing.
        at = body.lower().find(text.lower())
        if at < 0 and wanted != text.lower():
            at = body.casefold().find(wanted)
        if at < 0:
            continue
        end = at + len(text)
        return RecordingHit(
            session=session,
            where=where,
            before=("…" if at > SNIPPET_CHARS else "") + body[max(0, at - SNIPPET_CHARS) : at],
            match=body[at:end],
            after=body[end : end + SNIPPET_CHARS] + ("…" if len(body) > end + SNIPPET_CHARS else ""),
            seconds=time_at(index.get(key) or [], at),
        )
    return RecordingHit(session=session)


def recording_check(*, session: TerminalSession) -> RecordingCheck:
    """Compare what storage holds with the digest in the session's ``terminal.ended`` Logbook entry.

    What storage holds is read chunk by chunk against the manifest (terminal.recorder), from
    whichever web process asks.
    """
    entry = logbook_entry_first(
        action="terminal.ended", request_id=session.grant.request_id, detail={"terminal_session": session.pk}
    )
    logbook_sha256 = str(entry.detail.get("recording_sha256") or "") if entry else ""
    kept = recording_kept(session) if session.recording_path else KeptRecording(problem="nothing was recorded")
    stored_sha256 = kept.sha256
    if entry is None:
        problem = "The Logbook has no sealed digest for this recording (the terminal may still be open)."
    elif kept.missing:
        return RecordingCheck(
            logbook_sha256=logbook_sha256,
            file_sha256="",
            problem=(
                f"The recording cannot be read from storage ({kept.problem}). Its digest stays in the "
                "Logbook; this says nothing about the recording being changed."
            ),
            missing=True,
        )
    elif not stored_sha256:
        problem = "The recording file is missing from storage."
    elif not logbook_sha256 or not hmac.compare_digest(logbook_sha256, stored_sha256):
        problem = (
            "The recording file does not match the SHA-256 the Logbook recorded: it was changed after it was sealed."
        )
    elif kept.problem and session.recording_state == RecordingState.COMPLETE:
        problem = f"The recording in storage is not whole: {kept.problem}."
    else:
        problem = ""
    return RecordingCheck(logbook_sha256=logbook_sha256, file_sha256=stored_sha256, problem=problem)


# --- live sessions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveSession:
    """An open session and who watches it now (names, one per person; terminal.presence)."""

    session: TerminalSession
    watching: tuple[str, ...]


def _live_sessions(user: User) -> QuerySet[TerminalSession]:
    return (
        TerminalSession.objects.filter(permissions.live_session_visibility(user))
        .select_related("user", "grant__instance", "grant__request__account")
        .defer(*_TRANSCRIPT_FIELDS)
    )


def live_session_list(*, user: User, now: datetime | None = None) -> list[LiveSession]:
    """Every open session this person may watch, oldest first: not ended, and its process heard
    from within ``PASSPORT_RECORDING_STALE_SECONDS`` (a silent one is the sweep's to seal)."""
    fresh = (now or timezone.now()) - timedelta(seconds=settings.PASSPORT_RECORDING_STALE_SECONDS)
    sessions = list(
        _live_sessions(user).filter(ended_at__isnull=True, heartbeat_at__gte=fresh).order_by("started_at", "id")
    )
    try:
        watchers = presence.watchers(session_ids=[session.pk for session in sessions]) if sessions else {}
    except Exception:
        logger.warning("who watches the live sessions is unknown (presence unreadable)", exc_info=True)
        watchers = {}
    return [
        LiveSession(session=session, watching=tuple(sorted({w.name for w in watchers.get(session.pk, [])})))
        for session in sessions
    ]


def live_session_get(*, user: User, pk: int) -> TerminalSession:
    """One session (open or ended) this person may watch; a 404 otherwise."""
    return get_object_or_404(_live_sessions(user), pk=pk)
