"""The terminal page (xterm.js for one grant), and the recordings: search, playback, the cast file.

Recordings are found and served only through terminal.selectors, scoped by
accounts.permissions.recording_visibility: a recording someone may not watch is a 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

from asgiref.sync import sync_to_async
from csp.constants import NONCE, SELF, WASM_UNSAFE_EVAL
from csp.decorators import csp_update
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.models import User
from core.cross_site import cross_site_confirmed
from core.text import visible
from requests_app.selectors import grant_get
from terminal import selectors, services
from terminal.cast import CastRead, cast_read
from terminal.forms import RecordingSearchForm
from terminal.models import RecordingState, TerminalSession
from terminal.read_limits import recording_reads_limited
from terminal.recording import clock
from terminal.transcript import MAX_MARKERS, TRANSCRIPT_MAX_CHARS, transcript_cuts

SPEEDS = ("0.5", "1", "2", "4")


@never_cache
@login_required
@cross_site_confirmed("open a terminal on an instance (the session is recorded, in your name)")
# xterm.js sizes and colours its rows with <style> elements it creates: admitted on this page
# only, and only with the page's nonce, which terminal.js (loaded with it) gives them.
@csp_update({"style-src-elem": [SELF, NONCE]})  # type: ignore[arg-type]  # its types know no view arguments
def terminal_page(request: HttpRequest, grant_id: int) -> HttpResponse:
    user = request.user
    assert user.is_authenticated
    grant = grant_get(user=user, pk=grant_id)
    context = {"grant": grant, "req": grant.request, "instance": grant.instance}
    reason = services.terminal_unavailable_reason(grant=grant, user=user)
    if reason:
        return render(request, "terminal/unavailable.html", {**context, "reason": reason}, status=409)
    ticket = services.ticket_issue(user=user, grant=grant)
    return render(request, "terminal/terminal.html", {**context, "ticket": ticket})


@require_GET
@never_cache
@login_required
@cross_site_confirmed("search recordings (each recording a search shows is recorded as viewed, by you)")
@recording_reads_limited
def recording_list(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert user.is_authenticated
    form = RecordingSearchForm(request.GET)
    filters = form.to_filters() if form.is_valid() else None
    hits = selectors.recording_search(user=user, filters=filters) if filters is not None else []
    if filters is not None and filters.text:
        # Each hit's snippet is text of its recording: a read, as the player's page is.
        shown = [hit.session for hit in hits if hit.where]
        if shown:
            services.recordings_searched(sessions=shown, user=user, query=filters.text)
    context = {"form": form, "hits": hits, "nav": "recordings", "transcript_max": TRANSCRIPT_MAX_CHARS}
    return render(request, "terminal/recordings.html", context)


def _start_at(request: HttpRequest) -> float:
    """``?t=`` from a search hit: seconds into the recording; anything else starts at the beginning."""
    try:
        seconds = float(request.GET.get("t", "0"))
    except ValueError:
        return 0.0
    return seconds if 0 <= seconds < 10**7 else 0.0


@require_GET
@never_cache
@login_required
@cross_site_confirmed("play a recording (its viewing is recorded in the Logbook, in your name)")
# asciinema-player's terminal emulator is WebAssembly: compiling it needs 'wasm-unsafe-eval' (not
# 'unsafe-eval': no JavaScript eval), on the player's page only.
@csp_update({"script-src": [WASM_UNSAFE_EVAL]})  # type: ignore[arg-type]  # its types know no view arguments
@recording_reads_limited
def recording_page(request: HttpRequest, pk: int) -> HttpResponse:
    user = request.user
    assert user.is_authenticated
    session = selectors.recording_get(user=user, pk=pk)
    check = selectors.recording_check(session=session)
    if check.removed:
        services.recording_removed(session=session, user=user, problem=check.problem)
    elif check.missing:
        # Not a failed digest check: storage failed to answer (or a file made before chunks was never moved).
        services.recording_missing(session=session, user=user, problem=check.problem)
    else:
        services.recording_viewed(session=session, user=user, what="page", sha256_ok=check.ok)
    # Ended as the Logbook says, not only as the row (which an insider could reopen) says.
    ended, ended_at = check.ended, check.ended_at
    # A marker's label is what the person typed, shown as a tooltip: hidden characters as escapes. Bounded
    # here too: a row indexed before terminal.transcript bounded them may hold one per line ever typed.
    index = session.transcript_index if isinstance(session.transcript_index, dict) else {}
    commands = index.get("commands") or []
    markers = [[at, visible(label)] for at, label in commands[:MAX_MARKERS]]
    not_shown = max(len(commands) - MAX_MARKERS, 0) + int(index.get("commands_not_shown") or 0)
    partial = ended and session.recording_state == RecordingState.PARTIAL
    stops_at = clock(session.recorded_seconds or 0) if partial else ""
    if partial:
        # The player says where what was kept stops: a marker on its seek bar.
        markers.append([round(session.recorded_seconds or 0, 3), f"The recording stops here ({stops_at})"])
    player = {"speed": 1, "startAt": _start_at(request), "idleTimeLimit": 2, "markers": markers}
    context = {
        "session": session,
        "grant": session.grant,
        "instance": session.grant.instance,
        "req": session.grant.request,
        "check": check,
        "ended": ended,
        "ended_at": ended_at,
        "duration": _whole_seconds(ended_at - session.started_at) if ended and ended_at else None,
        "player_options": player,
        "partial": partial,
        "stops_at": stops_at,
        "speeds": SPEEDS,
        "markers_not_shown": not_shown,
        "max_markers": MAX_MARKERS,
        "transcript_cuts": transcript_cuts(index),
    }
    return render(request, "terminal/recording.html", context)


def _whole_seconds(value: timedelta) -> timedelta:
    """Shown as H:MM:SS; the microseconds would only be noise on the page."""
    return timedelta(seconds=round(value.total_seconds()))


@require_GET
@never_cache
@login_required
@cross_site_confirmed("download a recording (its viewing is recorded in the Logbook, in your name)")
@recording_reads_limited
def recording_cast(request: HttpRequest, pk: int) -> HttpResponse | StreamingHttpResponse:
    """The asciicast, to the same people as the page; never a public media URL. Read from the
    recordings storage (any web process serves any recording), each chunk checked against its
    manifest, and the whole against the digest the Logbook sealed before the first byte is sent
    (terminal.cast): a recording that does not match is refused (409), and on record as such; so is
    one whose sealing entry was edited (terminal.sealing)."""
    user = request.user
    assert user.is_authenticated
    session = selectors.recording_get(user=user, pk=pk)
    if not session.recording_path or not selectors.recording_sealed(session=session):
        raise Http404("This recording is not sealed yet.")
    # What the Logbook sealed: a chunk after those its digest covers is none of the recording.
    seal = selectors.recording_seal(session=session)
    if seal is None:  # the sealing entry was edited: it vouches for nothing, so nothing is served
        services.recording_viewed(session=session, user=user, what="cast", sha256_ok=False, served=False)
        return _refused(
            "The Logbook entry that sealed this recording was edited after it was written (its keyed hash "
            "no longer holds), so the recording cannot be checked and is not served. Its page says more."
        )
    sealed_sha256, sealed_chunks = seal
    read = cast_read(session, sealed_sha256=sealed_sha256, sealed_chunks=sealed_chunks)
    if not read.matches:
        read.close()
        return _cast_refused(session, user, read)
    services.recording_viewed(session=session, user=user, what="cast", sha256_ok=True, served=True)
    # Served by an ASGI server, the body must be an asynchronous iterator (Django would read a
    # synchronous one whole); either way a block at a time from the spool.
    body = read.body()
    response = StreamingHttpResponse(
        _cast_body_async(body) if isinstance(request, ASGIRequest) else body, content_type="application/x-asciicast"
    )
    response["Content-Disposition"] = f'inline; filename="terminal-{session.pk}.cast"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _cast_refused(session: TerminalSession, user: User, read: CastRead) -> HttpResponse:
    """The download of a recording that is not the one sealed: nothing of it sent; the Logbook says why."""
    kept = read.kept
    if not kept.chunks:
        raise Http404("The recording file is missing.")  # its page says why, and logs it
    if kept.removed:
        services.recording_removed(session=session, user=user, problem=kept.problem, what="cast")
        message, status = f"Part of this recording was removed after it was sealed ({kept.problem}).", 409
    elif kept.missing:
        services.recording_missing(session=session, user=user, problem=kept.problem, what="cast")
        message, status = f"The recording could not be read from storage ({kept.problem}). Try again.", 503
    else:
        services.recording_viewed(
            session=session, user=user, what="cast", sha256_ok=False, served=False, file_sha256=kept.sha256
        )
        message, status = (
            "This recording does not match the SHA-256 the Logbook sealed: it was changed after it was "
            "sealed, so it is not served. Its page says what was found.",
            409,
        )
    return _refused(message, status)


def _refused(message: str, status: int = 409) -> HttpResponse:
    refused = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    refused["X-Content-Type-Options"] = "nosniff"
    return refused


def _next_part(body: Iterator[bytes]) -> bytes | None:
    return next(body, None)


async def _cast_body_async(body: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Each chunk read (storage, blocking) in a thread, a chunk at a time."""
    advance = sync_to_async(_next_part, thread_sensitive=True)
    while (part := await advance(body)) is not None:
        yield part
