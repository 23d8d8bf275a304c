"""Ending the person's Session Manager sessions on an instance when their access there ends.

Every session the portal starts for a request (CLI tunnels and forwards, RDP forwards, the
browser terminal) and every one the person starts with the request's AWS credentials is owned
by the request's role session, ``.../passport-r<request>-u<person>``; others' are left alone.

Removal tries first, before the user goes (``grant_end_sessions``). Removing the user does not
end a port forward: the SSM agent, not the user, dials the port, so a forward to a database
would go on carrying data for as long as its session lives. So a try that leaves any behind (AWS
would not list the sessions, or would not end one; every one is tried all the same) is recorded
on the grant, ``sessions_end_at``, and the removal of the user goes on without waiting: the
sweep (``grant_end_left_sessions``, run by ``workers.tasks.end_left_sessions``) tries again,
backing off, until a try finds none of the person's sessions left on the instance. A failed try
is ``session.end_failed`` in the Logbook (the AWS call, its error code, never AWS's text) when it
fails otherwise than the last one written (``Grant.sessions_end_error``: the call and its error
codes) or ended some sessions: AWS refusing for days is one entry, not one per try, and the tries
go on all the same. The end of it is ``session.ended_late``, naming the sessions that try ended,
or ``session.none_left`` when there were none left to end (they had ended by themselves).

AWS credentials issued for the request (``access_request_issue_aws_credentials``) cannot be
revoked, and their session policy's cut-off is the request's expiry, not an early end: until
they expire they can start a new session (a forward) after removal's try. So while they may
(``AccessRequest.aws_credentials_until``, plus ``CREDENTIALS_MARGIN``) the grant stays on the
sweep's list, looked at every ``CREDENTIALS_WATCH_SECONDS`` rather than backing off; a session
found then is ended and ``session.ended_late`` (with ``credentials_until``); a last look after
the margin takes the grant off the list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from fleet import FleetError
from requests_app.iam import scoped_role_session_name
from requests_app.models import Grant
from requests_app.services.grant_log import grant_logbook_append
from requests_app.services.provisioning.common import _backoff, request_fleet

logger = logging.getLogger(__name__)

# Backoff between tries: 5 s after the first, doubling, at most an hour (the Logbook hears each).
SESSIONS_RETRY_CAP = 3600
# How many grants one run of the sweep takes; the rest are the next run's.
SWEEP_BATCH = 200
# While the request's credentials may start sessions, the grant is looked at this often (the
# sweep's own interval), and until this long after they expire: a session started just before
# shows in DescribeSessions a moment later, and clocks differ a little.
CREDENTIALS_WATCH_SECONDS = 30
CREDENTIALS_MARGIN = timedelta(seconds=60)


@dataclass
class SessionsEnd:
    """One try: the sessions ended, those AWS would not end (their error codes), and the error of
    DescribeSessions when it failed (then nothing else was tried)."""

    ended: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    listing_error: str = ""

    @property
    def complete(self) -> bool:
        return not self.listing_error and not self.failed


def _error_code(error: Exception) -> str:
    """What the Logbook says of a failed call: AWS's error code, or the exception's class for a
    failure of the portal's own (logged in full here; it is retried like AWS's)."""
    if isinstance(error, FleetError):
        return error.code or type(error).__name__
    logger.error("ending sessions failed unexpectedly", exc_info=error)
    return type(error).__name__


def _end_owned_sessions(grant: Grant) -> SessionsEnd:
    """DescribeSessions on the grant's instance, then TerminateSession on each of the person's
    sessions for this request; one that AWS will not end does not keep the others open."""
    owner_suffix = "/" + scoped_role_session_name(request_id=grant.request_id, user=grant.request.requester)
    result = SessionsEnd()
    try:
        fleet = request_fleet(grant.request)  # never another AWS account's "no sessions there"
        sessions = fleet.active_sessions(grant.instance.instance_id, grant.instance.region)
    except Exception as error:  # whatever it was, the sessions are still to end: recorded, tried again
        result.listing_error = _error_code(error)
        return result
    for session in sessions:
        if not session["Owner"].endswith(owner_suffix):
            continue
        try:
            fleet.terminate_session(session["SessionId"], grant.instance.region)
        except Exception as error:  # the others are tried all the same
            result.failed[session["SessionId"]] = _error_code(error)
        else:
            result.ended.append(session["SessionId"])
    return result


def _failure(result: SessionsEnd) -> str:
    """How a try failed, as ``Grant.sessions_end_error`` keeps it: the call and its error codes."""
    if result.listing_error:
        return f"DescribeSessions:{result.listing_error}"
    return "TerminateSession:" + ",".join(sorted(set(result.failed.values())))


def _failure_detail(result: SessionsEnd, attempt: int, next_attempt_at: datetime) -> dict[str, Any]:
    if result.listing_error:
        call, error = "DescribeSessions", result.listing_error
    else:
        call, error = "TerminateSession", next(iter(result.failed.values()))
    return {
        "call": call,
        "error": error,
        "ended": result.ended,
        "failed": result.failed,
        "attempt": attempt,
        "next_attempt_at": next_attempt_at.isoformat(),
    }


def _next_look(grant: Grant, now: datetime) -> datetime | None:
    """When to look again for sessions the request's credentials may still start: never later than
    the last look, at their expiry plus the margin; None once that is past (or none were issued)."""
    until = grant.request.aws_credentials_until
    if until is None or now >= until + CREDENTIALS_MARGIN:
        return None
    return min(now + timedelta(seconds=CREDENTIALS_WATCH_SECONDS), until + CREDENTIALS_MARGIN)


def _next_try(grant: Grant, now: datetime, attempt: int) -> datetime:
    """After a failed try: the backoff, or sooner while the credentials may start sessions."""
    backoff = now + timedelta(seconds=_backoff(attempt, SESSIONS_RETRY_CAP))
    look = _next_look(grant, now)
    return backoff if look is None else min(backoff, look)


def grant_end_sessions(grant: Grant) -> SessionsEnd | None:
    """Removal's try, before the user goes; never raises for AWS. None when an earlier try left
    sessions on record: the sweep has them (one owner, so no try is written down twice). A try
    that finds them put on record meanwhile (another removal run, its lease taken over) says what
    it ended, if anything, and leaves what it could not end to the sweep, unsaid."""
    if grant.sessions_end_at is not None:
        return None
    result = _end_owned_sessions(grant)
    now = timezone.now()
    if result.complete:
        if result.ended:
            grant_logbook_append(grant, "session.ended_with_access", {"session_ids": result.ended})
        look = _next_look(grant, now)
        if look is not None:
            Grant.objects.filter(pk=grant.pk, sessions_end_at__isnull=True).update(sessions_end_at=look)
        return result
    next_attempt_at = _next_try(grant, now, 1)
    with transaction.atomic():
        recorded = Grant.objects.filter(pk=grant.pk, sessions_end_at__isnull=True).update(
            sessions_end_at=next_attempt_at, sessions_end_attempts=1, sessions_end_error=_failure(result)
        )
        if recorded:
            grant_logbook_append(grant, "session.end_failed", _failure_detail(result, 1, next_attempt_at))
        elif result.ended:
            grant_logbook_append(grant, "session.ended_with_access", {"session_ids": result.ended})
    return result


def grants_with_sessions_left() -> list[int]:
    """The grants whose sessions left by an earlier try are due for another, longest waiting first."""
    return list(
        Grant.objects.filter(sessions_end_at__lte=timezone.now())
        .order_by("sessions_end_at", "pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )


def grant_end_left_sessions(*, grant_id: int) -> SessionsEnd | None:
    """The sweep's try at one grant's sessions left on record, or at those the request's
    credentials may have started since; None when none is due (already ended, not yet time, or
    taken by another worker)."""
    now = timezone.now()
    grant = (
        Grant.objects.select_related("request__account", "request__requester", "instance")
        .filter(pk=grant_id, sessions_end_at__lte=now)
        .first()
    )
    if grant is None:
        return None
    attempt = grant.sessions_end_attempts + 1
    next_attempt_at = _next_try(grant, now, attempt)
    # Claimed by moving the next try on first, as if this one will fail: a duplicate delivery finds
    # nothing due, and a worker killed during the try leaves it to the next one, after the backoff.
    claimed = Grant.objects.filter(
        pk=grant.pk, sessions_end_at=grant.sessions_end_at, sessions_end_attempts=grant.sessions_end_attempts
    ).update(sessions_end_at=next_attempt_at, sessions_end_attempts=attempt)
    if not claimed:
        return None
    result = _end_owned_sessions(grant)
    with transaction.atomic():
        if result.complete:
            # None left now; looked for again while the credentials may start more.
            Grant.objects.filter(pk=grant.pk, sessions_end_attempts=attempt).update(
                sessions_end_at=_next_look(grant, timezone.now()), sessions_end_attempts=0, sessions_end_error=""
            )
            if grant.sessions_end_attempts and result.ended:  # the end of earlier failed tries
                grant_logbook_append(grant, "session.ended_late", {"session_ids": result.ended, "attempts": attempt})
            elif grant.sessions_end_attempts:  # what they could not end had ended by itself
                grant_logbook_append(grant, "session.none_left", {"attempts": attempt})
            elif result.ended:  # started with the request's credentials after removal's try
                until = grant.request.aws_credentials_until
                detail = {"session_ids": result.ended, "credentials_until": until.isoformat() if until else None}
                grant_logbook_append(grant, "session.ended_late", detail)
        else:
            failure = _failure(result)
            # Written when it fails otherwise than the Logbook last heard, or ended some sessions.
            if failure != grant.sessions_end_error or result.ended:
                Grant.objects.filter(pk=grant.pk, sessions_end_attempts=attempt).update(sessions_end_error=failure)
                grant_logbook_append(grant, "session.end_failed", _failure_detail(result, attempt, next_attempt_at))
    return result
