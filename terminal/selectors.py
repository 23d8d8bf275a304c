"""Reading for the terminal: recordings, only what the person may see, else a 404 (grants are
read through requests_app.selectors)."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import NotSupportedError, connection
from django.db.models import Case, F, FloatField, Q, QuerySet, TextField, Value, When
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Substr
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts import permissions
from accounts.models import User
from audit.models import LogbookEntry
from core.sql_functions import TwoDialectFunc
from terminal import presence
from terminal.models import RecordingState, TerminalSession
from terminal.recorder import KeptRecording, recording_kept
from terminal.sealing import EDITED_SEAL, UNSEALED, contradiction_said, row_contradictions, sealing_entry
from terminal.transcript import TranscriptCut, transcript_cuts

logger = logging.getLogger(__name__)

# --- recordings ---------------------------------------------------------------------------
SNIPPET_CHARS = 60
# A text search reads up to 8 MiB a direction per recording, newest first, until it has this many
# hits: fewer than a plain listing's 50.
TEXT_SEARCH_LIMIT = 20


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

    # Where a hit's transcript stops short (``transcript_index["cut"]``): what follows is not searched.
    transcript_cuts: tuple[TranscriptCut, ...] = ()


@dataclass(frozen=True)
class RecordingCheck:
    """The stored file's SHA-256 against the one the Logbook recorded when the recording was sealed."""

    logbook_sha256: str
    file_sha256: str
    problem: str
    # The file (or a chunk of it) could not be read from storage: a storage error, not a finding.
    missing: bool = False
    # Part of the sealed recording was removed (from storage, or its manifest from the database).
    removed: bool = False
    # The session has ended (the Logbook sealed it, or its row says so), and when (the row's time,
    # else the sealing entry's).
    ended: bool = False
    ended_at: datetime | None = None

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
    sealed). Each hit carries a snippet of its first match and the moment it appeared; a text
    search returns at most ``TEXT_SEARCH_LIMIT`` hits.
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
    queryset = queryset.defer(*_TRANSCRIPT_FIELDS)
    if not filters.text:
        return [RecordingHit(session=session) for session in queryset[:limit]]
    found = _first_matches(queryset, filters.text, limit=min(limit, TEXT_SEARCH_LIMIT))
    sessions = {session.pk: session for session in queryset.filter(pk__in=found)}
    return _hits([sessions[pk] for pk in found if pk in sessions], found, filters.text)


def _first_matches(queryset: QuerySet[TerminalSession], text: str, *, limit: int) -> dict[int, int]:
    """The newest ``limit`` sessions of ``queryset`` whose transcripts hold ``text``, ignoring case,
    newest first: session id to where its first match is, 1-based, in what was printed (positive)
    or, when only there, in what was typed (negative).

    Each transcript is read once: the match's position is the filter (``strpos(lower(...))``,
    which is what ILIKE does on PostgreSQL, character for character, and takes ``%``, ``_`` and
    ``\\`` literally), computed in a subquery that is not folded into the outer one (``OFFSET 0``), so
    the outer ``WHERE`` reads the computed value instead of computing it again. Each level says its
    order, which the one below already has, so no level sorts the positions: the recordings are
    read newest first and the reading stops at the ``limit``-th hit. What was typed is read only
    when what was printed does not hold the text. The pg_trgm indexes of migration 0002 are not
    used: what they find is only a list of candidates, each read again to be confirmed."""
    if connection.vendor not in ("postgresql", "sqlite"):
        raise NotSupportedError("recording search runs on PostgreSQL and SQLite")
    position = "STRPOS" if connection.vendor == "postgresql" else "INSTR"
    # SQLite takes OFFSET only after a LIMIT, PostgreSQL refuses a negative LIMIT.
    fence = "OFFSET 0" if connection.vendor == "postgresql" else "LIMIT -1 OFFSET 0"
    rows = queryset.order_by("-started_at", "-id").values(
        sid=F("pk"), at=F("started_at"), printed=F("transcript"), typed=F("transcript_input")
    )
    rows_sql, rows_params = rows.query.get_compiler(using=queryset.db).as_sql()
    # Only the two names above and Django's own SQL for ``rows`` are put in; every value is a parameter.
    sql = (
        "SELECT t.sid, t.found FROM ("  # noqa: S608  # nosec B608
        f" SELECT s.sid, s.at, COALESCE(NULLIF({position}(LOWER(s.printed), LOWER(%s)), 0),"
        f" -NULLIF({position}(LOWER(s.typed), LOWER(%s)), 0)) AS found"
        f" FROM ({rows_sql} {fence}) s ORDER BY s.at DESC, s.sid DESC {fence}"
        ") t WHERE t.found IS NOT NULL ORDER BY t.at DESC, t.sid DESC LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, (text, text, *rows_params, limit))
        return {int(sid): int(found) for sid, found in cursor.fetchall()}


_TRANSCRIPT_FIELDS = ("transcript", "transcript_input", "transcript_index")
# (where, column, key in transcript_index), in the order a match is looked for.
_DIRECTIONS = (("output", "transcript", "o"), ("input", "transcript_input", "i"))


@dataclass(frozen=True)
class _Found:
    where: str
    column: str
    key: str
    # Of the first match, 0-based, in characters; and where the snippet's window starts.
    at: int
    start: int


class _SecondsAt(TwoDialectFunc):
    """``terminal.transcript.time_at`` in the database: when the text at ``offset`` of one direction
    appeared, from its ``transcript_index`` entries (the last one at or before it, else the first),
    so the index, an entry per event, is never loaded."""

    output_field = FloatField()
    arg_names = ("index", "offset")
    what = "recording search"
    template = (
        "COALESCE((SELECT (e.entry ->> 1)::double precision FROM jsonb_array_elements(%(index)s)"
        " WITH ORDINALITY AS e(entry, n)"
        " ORDER BY CASE WHEN (e.entry ->> 0)::double precision <= %(offset)s THEN e.n ELSE -e.n END DESC LIMIT 1), 0)"
    )
    # json_each numbers an array's elements from 0.
    template_sqlite = (
        "COALESCE((SELECT json_extract(e.value, '$[1]') FROM json_each(%(index)s) AS e"
        " ORDER BY CASE WHEN json_extract(e.value, '$[0]') <= %(offset)s THEN e.key + 1 ELSE -(e.key + 1) END DESC"
        " LIMIT 1), 0)"
    )

    def __init__(self, key: str, offset: int) -> None:
        super().__init__(KeyTransform(key, "transcript_index"), Value(offset))


def _hits(sessions: list[TerminalSession], matches: dict[int, int], text: str) -> list[RecordingHit]:
    """Each session's first match, output before input, with ``SNIPPET_CHARS`` either side.

    The database found where (``matches``, from ``lower()``, as the filter matches); one more
    query brings back only each hit's window of text and the moment it appeared. Matching is
    lower() character for character, so a match is ``len(text)`` long and offsets hold;
    casefolding (ß as ss) is not done, by the filter either, so it was dropped here too.
    """
    found: dict[int, _Found] = {}
    for session in sessions:
        where, column, key = _DIRECTIONS[0] if matches[session.pk] > 0 else _DIRECTIONS[1]
        at = abs(matches[session.pk]) - 1
        found[session.pk] = _Found(where, column, key, at, max(0, at - SNIPPET_CHARS))
    if not found:
        return [RecordingHit(session=session) for session in sessions]
    rows = (
        TerminalSession.objects.filter(pk__in=found)
        .annotate(
            window=Case(
                *(
                    When(
                        pk=pk,
                        # One character past the snippet says whether the text goes on.
                        then=Substr(f.column, f.start + 1, f.at - f.start + len(text) + SNIPPET_CHARS + 1),
                    )
                    for pk, f in found.items()
                ),
                output_field=TextField(),
            ),
            seconds=Case(*(When(pk=pk, then=_SecondsAt(f.key, f.at)) for pk, f in found.items())),
            cut=KeyTransform("cut", "transcript_index"),
        )
        .values_list("pk", "window", "seconds", "cut")
    )
    windows = {pk: (window or "", float(seconds or 0), cut) for pk, window, seconds, cut in rows}
    hits = []
    for session in sessions:
        f = found.get(session.pk)
        if f is None or session.pk not in windows:
            hits.append(RecordingHit(session=session))
            continue
        window, seconds, cut = windows[session.pk]
        at, end = f.at - f.start, f.at - f.start + len(text)
        hits.append(
            RecordingHit(
                session=session,
                where=f.where,
                before=("…" if f.start > 0 else "") + window[:at],
                match=window[at:end],
                after=window[end : end + SNIPPET_CHARS] + ("…" if len(window) > end + SNIPPET_CHARS else ""),
                seconds=seconds,
                transcript_cuts=tuple(transcript_cuts({"cut": cut})),
            )
        )
    return hits


def recording_check(*, session: TerminalSession) -> RecordingCheck:
    """Compare what storage holds with the digest in the session's ``terminal.ended`` Logbook entry.

    The entry is found by the session's id alone (terminal.sealing), and once there is one the
    session has ended and is checked, whatever its row says; a row that contradicts the entry,
    or says the session ended when the Logbook never sealed it, is tampering. What storage holds
    is read chunk by chunk against the manifest (terminal.recorder), from whichever web process asks.
    """
    entry, genuine = sealing_entry(session)
    if entry is not None and not genuine:
        # Nothing the entry says is the Logbook's word any more: no digest to check against, no
        # facts to hold the row to. Tampered, whatever storage holds.
        return RecordingCheck(
            logbook_sha256="", file_sha256="", problem=EDITED_SEAL, ended=True, ended_at=session.ended_at
        )
    check = _digest_check(session, entry)
    sealed_at = entry.created_at if entry else None
    if entry is None:
        if session.ended_at is not None:
            check = replace(check, problem=UNSEALED, missing=False, removed=False)
    elif found := row_contradictions(session, entry):
        said = contradiction_said(found)
        if check.removed:  # still recording.removed, with the removal first (the Logbook keeps 500 characters)
            check = replace(check, problem=f"{check.problem} {said}")
        else:  # a storage failure is not what is reported here: the row itself is the finding
            verdict = check.problem or "The recording matches the SHA-256 the Logbook sealed."
            check = replace(check, problem=f"{said} {verdict}", missing=False)
    return replace(
        check, ended=entry is not None or session.ended_at is not None, ended_at=session.ended_at or sealed_at
    )


def _sealed_chunks(entry: LogbookEntry | None) -> int | None:
    """How many chunks the digest a ``terminal.ended`` entry sealed covers; a sealing with no digest
    covers none (a chunk in storage is none of what was sealed). None: no entry, or one from before
    the count."""
    if entry is None:
        return None
    if not entry.detail.get("recording_sha256"):
        return 0
    counted = entry.detail.get("recording_chunks")
    return counted if type(counted) is int and counted > 0 else None


def recording_seal(*, session: TerminalSession) -> tuple[str, int | None] | None:
    """What the Logbook sealed of the recording (what is played and downloaded): its SHA-256 ("" if
    none was sealed) and how many of its chunks that covers (None: all). None when the sealing
    entry was edited (its keyed hash does not hold): it vouches for nothing (``EDITED_SEAL``)."""
    entry, genuine = sealing_entry(session)
    if entry is not None and not genuine:
        return None
    return (str(entry.detail.get("recording_sha256") or "") if entry else ""), _sealed_chunks(entry)


def _digest_check(session: TerminalSession, entry: LogbookEntry | None) -> RecordingCheck:
    logbook_sha256 = str(entry.detail.get("recording_sha256") or "") if entry else ""
    sealed_chunks = _sealed_chunks(entry)
    kept = (
        recording_kept(session, sealed_sha256=logbook_sha256, sealed_chunks=sealed_chunks, transcript=False)
        if session.recording_path
        else KeptRecording(problem="nothing was recorded")
    )
    stored_sha256 = kept.sha256
    if entry is None:
        problem = "The Logbook has no sealed digest for this recording (the terminal may still be open)."
    elif kept.removed:
        return RecordingCheck(
            logbook_sha256=logbook_sha256,
            file_sha256="",
            problem=(
                f"This recording was removed after it was sealed: {kept.problem}. Storage does not lose a "
                "part of a recording on its own: treat this as tampering until someone explains it. What "
                "the Logbook sealed cannot be checked or played; earlier versions of removed chunks may "
                "still be in the bucket (versioning, Object Lock)."
            ),
            removed=True,
        )
    elif kept.missing:
        return RecordingCheck(
            logbook_sha256=logbook_sha256,
            file_sha256="",
            problem=(
                f"The recording could not be read from storage ({kept.problem}), so it was not checked "
                "against the SHA-256 in the Logbook. Try again; if it persists, find out why."
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


def recording_sealed(*, session: TerminalSession) -> bool:
    """Whether the session has ended: its row says so, or else its ``terminal.ended`` entry does."""
    return session.ended_at is not None or sealing_entry(session)[0] is not None


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
