"""What is kept of a session's recording: where it is, its searchable text, and the Logbook
entries of people viewing it (or finding it missing or removed)."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from audit.services import logbook_batch
from core.text import visible_excerpt
from requests_app.models import Grant
from requests_app.services.grant_log import grant_logbook_append
from terminal.models import TerminalSession
from terminal.recorder import recording_kept, recording_transcript_read
from terminal.transcript import Transcript

logger = logging.getLogger(__name__)

# Of a search's query in ``recording.viewed`` (escaped: up to six characters for each one typed).
MAX_QUERY_CHARS = 200


def recording_relative_path(*, grant: Grant) -> str:
    now = timezone.now()
    return f"recordings/{now:%Y/%m/%d}/grant-{grant.pk}-{now:%H%M%S}-{secrets.token_hex(4)}.cast"


def recording_absolute_path(relative: str) -> Path:
    return Path(settings.MEDIA_ROOT) / relative


def recording_transcript(*, session: TerminalSession, chunks: int | None = None) -> Transcript:
    """The searchable text of what was kept of a recording (of its first ``chunks`` chunks: those
    its digest covers); empty (and logged) if storage cannot be read, so a storage problem never
    stops a terminal from being recorded as ended."""
    if not session.recording_path:
        return Transcript()
    try:
        return recording_transcript_read(session, chunks=chunks)
    except Exception:
        logger.exception("could not read the recording of terminal session %s for its transcript", session.pk)
        return Transcript()


@dataclass(frozen=True)
class TranscriptRefresh:
    """What ``recording_transcript_refresh`` did: replaced the stored text (``changed``), found it the
    same, or left it as it was because of ``problem``."""

    changed: bool = False
    problem: str = ""


def recording_transcript_refresh(*, session: TerminalSession) -> TranscriptRefresh:
    """Re-extract a sealed recording's text (``manage.py terminal_transcripts``) and store it if it
    differs from what is stored.

    The searchable text is part of the evidence: it is replaced only from a recording that
    storage gives back whole and that matches the digest sealed with it, never from a part of
    one or from a file changed since, and each replacement is in the Logbook. Text the same as
    what is stored is left alone, with no entry, so running it again changes nothing.
    """
    if not session.recording_path:
        return TranscriptRefresh(problem="nothing was recorded")
    kept = recording_kept(session)
    if kept.problem or not kept.chunks:
        return TranscriptRefresh(problem=kept.problem or "nothing is kept in storage")
    if session.recording_sha256 and not hmac.compare_digest(kept.sha256, session.recording_sha256):
        return TranscriptRefresh(problem="the recording in storage does not match the SHA-256 sealed with it")
    transcript = kept.transcript
    with transaction.atomic():
        text: dict[str, object] = {"transcript": transcript.output, "transcript_input": transcript.input}
        text["transcript_index"] = transcript.index
        if not TerminalSession.objects.filter(pk=session.pk).exclude(Q(**text)).update(**text):
            return TranscriptRefresh()
        detail: dict[str, object] = {
            "terminal_session": session.pk,
            "of": session.user.username,
            "recording_sha256": session.recording_sha256,
        }
        grant_logbook_append(session.grant, "recording.reindexed", detail, actor=None)
    return TranscriptRefresh(changed=True)


def recording_viewed(
    *,
    session: TerminalSession,
    user: User,
    what: str,
    sha256_ok: bool | None = None,
    query: str | None = None,
    served: bool | None = None,
    file_sha256: str | None = None,
) -> None:
    """Record that a person read what a recording holds: watched it (``what="page"``), fetched it
    (``"cast"``), read its transcripts on the Django admin's page of the session (``"admin"``) or a
    search's snippet of it (``"search"``, with the ``query``: see ``recordings_searched``).

    ``sha256_ok`` is what the check of the file against the Logbook's sealed digest found (the page's,
    the download's own); for the download ``served`` says whether it was sent (it is not when the
    check failed) and ``file_sha256`` what was read when it was refused.
    """
    detail: dict[str, object] = {
        "terminal_session": session.pk,
        "of": session.user.username,
        "what": what,
        "recording_sha256": session.recording_sha256,
    }
    if sha256_ok is not None:
        detail["sha256_ok"] = sha256_ok
    if served is not None:
        detail["served"] = served
    if file_sha256 is not None:
        detail["file_sha256"] = file_sha256
    if query is not None:
        # What the reader typed: outside text, its hidden characters escaped and cut.
        detail["query"] = visible_excerpt(query, MAX_QUERY_CHARS)
    grant_logbook_append(session.grant, "recording.viewed", detail, actor=user)


def recordings_searched(*, sessions: Iterable[TerminalSession], user: User, query: str) -> None:
    """Record that a search showed a snippet of each of ``sessions`` (the text around ``query``): one
    ``recording.viewed`` each, since repeated searches could read a transcript out. Appended together,
    under one hold of the Logbook's head (``logbook_batch``): as many queries however many hits."""
    with transaction.atomic(), logbook_batch():
        for session in sessions:
            recording_viewed(session=session, user=user, what="search", query=query)


def recording_missing(*, session: TerminalSession, user: User, problem: str, what: str = "page") -> None:
    """Record that a person asked for a recording storage failed to give back (``recording.missing``:
    a storage error, or a file made before chunks not in the storage), instead of a
    ``recording.viewed`` whose failed digest check would read like a changed recording."""
    detail: dict[str, object] = {
        "terminal_session": session.pk,
        "of": session.user.username,
        "what": what,
        "recording_sha256": session.recording_sha256,
        "problem": problem[:500],
    }
    grant_logbook_append(session.grant, "recording.missing", detail, actor=user)


def recording_removed(*, session: TerminalSession, user: User, problem: str, what: str = "page") -> None:
    """Record that a person asked for a recording part of which was removed after it was sealed
    (``recording.removed``): a chunk storage says does not exist, or manifest rows gone."""
    detail: dict[str, object] = {
        "terminal_session": session.pk,
        "of": session.user.username,
        "what": what,
        "recording_sha256": session.recording_sha256,
        "problem": problem[:500],
    }
    grant_logbook_append(session.grant, "recording.removed", detail, actor=user)
