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
backing off, until a try finds none of the person's sessions left on the instance. Each failed
try is ``session.end_failed`` in the Logbook (the AWS call, its error code, never AWS's text),
and the end of it ``session.ended_late``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from fleet import FleetError, fleet_for
from requests_app.iam import scoped_role_session_name
from requests_app.models import Grant
from requests_app.services.grant_log import grant_logbook_append
from requests_app.services.provisioning.common import _backoff

logger = logging.getLogger(__name__)

# Backoff between tries: 5 s after the first, doubling, at most an hour (the Logbook hears each).
SESSIONS_RETRY_CAP = 3600
# How many grants one run of the sweep takes; the rest are the next run's.
SWEEP_BATCH = 200


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
        fleet = fleet_for(grant.request.account)
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


def grant_end_sessions(grant: Grant) -> SessionsEnd | None:
    """Removal's try, before the user goes; never raises for AWS. None when an earlier try left
    sessions on record: the sweep has them (one owner, so no try is written down twice)."""
    if grant.sessions_end_at is not None:
        return None
    result = _end_owned_sessions(grant)
    if result.complete:
        if result.ended:
            grant_logbook_append(grant, "session.ended_with_access", {"session_ids": result.ended})
        return result
    next_attempt_at = timezone.now() + timedelta(seconds=_backoff(1, SESSIONS_RETRY_CAP))
    with transaction.atomic():
        Grant.objects.filter(pk=grant.pk, sessions_end_at__isnull=True).update(
            sessions_end_at=next_attempt_at, sessions_end_attempts=1
        )
        grant_logbook_append(grant, "session.end_failed", _failure_detail(result, 1, next_attempt_at))
    return result


def grants_with_sessions_left() -> list[int]:
    """The grants whose sessions left by an earlier try are due for another, longest waiting first."""
    return list(
        Grant.objects.filter(sessions_end_at__lte=timezone.now())
        .order_by("sessions_end_at", "pk")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )


def grant_end_left_sessions(*, grant_id: int) -> SessionsEnd | None:
    """The sweep's try at one grant's sessions left on record; None when none is due (already
    ended, not yet time, or taken by another worker)."""
    now = timezone.now()
    grant = (
        Grant.objects.select_related("request__account", "request__requester", "instance")
        .filter(pk=grant_id, sessions_end_at__lte=now)
        .first()
    )
    if grant is None:
        return None
    attempt = grant.sessions_end_attempts + 1
    next_attempt_at = now + timedelta(seconds=_backoff(attempt, SESSIONS_RETRY_CAP))
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
            Grant.objects.filter(pk=grant.pk, sessions_end_attempts=attempt).update(
                sessions_end_at=None, sessions_end_attempts=0
            )
            grant_logbook_append(grant, "session.ended_late", {"session_ids": result.ended, "attempts": attempt})
        else:
            grant_logbook_append(grant, "session.end_failed", _failure_detail(result, attempt, next_attempt_at))
    return result
