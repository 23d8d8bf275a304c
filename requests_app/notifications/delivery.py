"""Getting notifications out: queued after commit, claimed, sent, and swept up when they were not."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from accounts.models import NotificationReceipt, User
from audit.models import LogbookEntry
from audit.services import logbook_append
from core.dispatch import task_send
from requests_app.models import AccessRequest, EndReason, RequestStatus
from requests_app.notifications.messages import (
    KINDS,
    Kind,
    event_of,
    matches_state,
    notification_message,
    recipients_of,
    warned_end,
)
from requests_app.notifications.receipts import (
    CLAIM_STALE,
    MAX_ATTEMPTS,
    receipt_claim,
    receipt_claim_renew,
    receipt_sent,
    receipts_to_retry,
    unsent_receipts_drop,
)

logger = logging.getLogger(__name__)

# The sweep finds requests that should have been told and never were (the task lost) only this
# recent, so switching it on (or a deploy) does not mail about everything in history.
SWEEP_RECENT = timedelta(hours=1)


def notification_enqueue(*, kind: str, request_id: int) -> None:
    """Queue a notification to be sent once the current transaction commits."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification {kind!r}")
    transaction.on_commit(lambda: notification_dispatch(kind=kind, request_id=request_id))


def notification_dispatch(*, kind: str, request_id: int) -> None:
    """Hand a notification to the workers; never raises (called after commit).

    With the broker down it is sent from this process instead (the receipt still makes it
    at most once), so a mail is never lost with the broker: the workers would not find it again.
    """
    try:
        task_send("send_notification", kind, request_id)
        return
    except (BrokerError, ConnectionError, TimeoutError) as exc:
        logger.warning(
            "broker unreachable: the %s notification for request #%s is sent here (%s)", kind, request_id, exc
        )
    except Exception:
        logger.exception("could not queue the %s notification for request #%s", kind, request_id)
        return
    try:
        notification_send(kind=kind, request_id=request_id)
    except Exception:
        logger.exception("the %s notification for request #%s could not be sent in-process", kind, request_id)


def _send(
    subject: str, body: str, recipients: list[str], *, claim_renew: Callable[[], bool] | None = None
) -> tuple[bool, bool]:
    """One message per recipient over one connection, so that one address the server refuses
    keeps nobody else from hearing; nobody sees who else was told. Whether any went out, and
    whether every recipient was tried: after each, ``claim_renew`` (when given) keeps the claim on
    the notification, and when it was lost (another sender took it over) the rest are left to that
    sender. Raises when no connection could be opened (the mail server down)."""
    sent = False
    with get_connection() as connection:
        for recipient in recipients:
            try:
                sent |= bool(EmailMessage(subject, body, None, [recipient], connection=connection).send())
            except Exception:
                logger.exception("a mail (%s) could not be sent to one of its %d recipients", subject, len(recipients))
            if claim_renew is not None and not claim_renew():
                return sent, False
    return sent, True


def notification_send(*, kind: str, request_id: int) -> bool:
    """Send one notification now, at most once per request, kind and event (and end time warned of).
    Returns whether mail went out.

    A kind the request's state does not bear out (an "approved" mail for a pending request) is
    refused, logged and not claimed: whoever can reach the broker can name any kind. A mail the
    server did not take stays claimed but unsent, and is tried again (``receipts``).
    """
    now = timezone.now()
    access_request = AccessRequest.objects.filter(pk=request_id).first()
    if access_request is None or kind not in KINDS or not matches_state(kind, access_request, now=now):
        if unsent_receipts_drop(kind=kind, request_id=request_id, now=now):
            logger.info("the unsent %s notification for request #%s is no longer due", kind, request_id)
        else:
            logger.warning(
                "a %r notification for request #%s was refused: the request is not in that state", kind, request_id
            )
        return False
    ends_at = warned_end(kind, access_request)
    # The event told of: a retried send finds the same one, a later one (back to pending again) is
    # told too, and the unsent claims of the one before it are no longer anyone's to send.
    event_id = event_of(kind, access_request)
    unsent_receipts_drop(kind=kind, request_id=request_id, now=now, keep_event_id=event_id)
    attempt = receipt_claim(kind=kind, request_id=request_id, expires_at=ends_at, event_id=event_id, now=now)
    if attempt is None:
        return False  # sent already, or another sender is on it (a duplicate delivery, a second sweep)
    held = now

    def claim_renew() -> bool:
        nonlocal held
        renewed_at = timezone.now()
        if not receipt_claim_renew(
            kind=kind, request_id=request_id, expires_at=ends_at, event_id=event_id, held=held, now=renewed_at
        ):
            return False
        held = renewed_at
        return True

    try:
        message = notification_message(kind, request_id, ends_at=ends_at, event_id=event_id)
        if message is None or not message.recipients:
            sent, settled = False, True  # nobody to tell: nothing to try again
        else:
            sent, kept = _send(message.subject, message.body, message.recipients, claim_renew=claim_renew)
            if not kept:
                logger.warning(
                    "the %s notification for request #%s was taken over by another sender mid-send", kind, request_id
                )
                return sent
            settled = sent
    except Exception:
        logger.exception("the %s notification for request #%s could not be sent", kind, request_id)
        sent = settled = False
    if settled:
        receipt_sent(kind=kind, request_id=request_id, expires_at=ends_at, event_id=event_id, now=timezone.now())
    elif attempt < MAX_ATTEMPTS:
        logger.warning(
            "the %s notification for request #%s was not sent (attempt %d): tried again in %d minutes",
            kind,
            request_id,
            attempt,
            CLAIM_STALE.total_seconds() // 60,
        )
    else:
        logger.error("the %s notification for request #%s was given up after %d attempts", kind, request_id, attempt)
        # Nobody was told: the auditors see it beside the request, not only in a log file.
        logbook_append(
            action="notification.given_up",
            actor=None,
            account=access_request.account,
            request_id=request_id,
            detail={"kind": str(kind), "attempts": attempt},
        )
    return sent


def requests_due_for_notice(*, now: datetime | None = None) -> list[tuple[str, int]]:
    """What the sweep sends: (kind, request id) of requests ending within the warning window,
    newly failed ones, newly expired unapproved ones and pending ones whose approvers were never
    asked (or not asked again since the request went back to pending), each not yet claimed; and
    every notification claimed but left unsent long enough to be claimed again."""
    moment = now or timezone.now()
    warning = timedelta(minutes=settings.PASSPORT_EXPIRY_WARNING_MINUTES)

    def unclaimed(kind: str, *, end: bool = False) -> Q:
        receipts = NotificationReceipt.objects.filter(kind=kind, request_id=OuterRef("pk"))
        return ~Q(Exists(receipts.filter(expires_at=OuterRef("expires_at")) if end else receipts))

    requests = AccessRequest.objects.order_by()
    # Warned of each end once: an extension moves the end, and the new one is warned of too.
    expiring = requests.filter(
        unclaimed(Kind.EXPIRING, end=True),
        status=RequestStatus.ACTIVE,
        expires_at__gt=moment,
        expires_at__lte=moment + warning,
    )
    # Failure is decided by the provisioning workers; the sweep tells the requester.
    failed = requests.filter(unclaimed(Kind.FAILED), status=RequestStatus.FAILED, ended_at__gte=moment - SWEEP_RECENT)
    # Asked after commit as a rule; this is for a task that never ran (the grace lets it run first).
    grace = timedelta(seconds=settings.PASSPORT_SWEEP_GRACE_SECONDS)
    pending = requests.filter(
        unclaimed(Kind.AWAITING_APPROVAL),
        status=RequestStatus.PENDING,
        created_at__gte=moment - SWEEP_RECENT,
        created_at__lte=moment - grace,
    )
    # Expiry of a request left pending is decided by the expiry sweep; this one tells the requester.
    unapproved = requests.filter(
        unclaimed(Kind.EXPIRED_UNAPPROVED),
        status=RequestStatus.EXPIRED,
        end_reason=EndReason.EXPIRED,
        activated_at__isnull=True,
        ended_at__gte=moment - SWEEP_RECENT,
    )
    # A request back to pending is another asking (its receipts keyed to the request.back_to_pending
    # entry, messages.event_of): one whose task never ran is asked again, and its requester told.
    back = (
        LogbookEntry.objects.filter(request_id=OuterRef("pk"), action="request.back_to_pending")
        .order_by("-id")
        .values("id", "created_at")[:1]
    )
    reopened = requests.annotate(
        back_id=Subquery(back.values("id")), back_at=Subquery(back.values("created_at"))
    ).filter(status=RequestStatus.PENDING, back_at__gte=moment - SWEEP_RECENT, back_at__lte=moment - grace)

    def not_told(kind: str) -> Q:
        told = NotificationReceipt.objects.filter(kind=kind, request_id=OuterRef("pk"), event_id=OuterRef("back_id"))
        return ~Q(Exists(told))

    due: list[tuple[str, int]] = []
    for kind, found in (
        (Kind.EXPIRING, expiring),
        (Kind.FAILED, failed),
        (Kind.AWAITING_APPROVAL, pending),
        (Kind.EXPIRED_UNAPPROVED, unapproved),
        (Kind.AWAITING_APPROVAL, reopened.filter(not_told(Kind.AWAITING_APPROVAL))),
        (Kind.BACK_TO_PENDING, reopened.filter(not_told(Kind.BACK_TO_PENDING))),
    ):
        due += [(kind, pk) for pk in found.values_list("pk", flat=True)[:500]]
    due += receipts_to_retry(now=moment)
    return list(dict.fromkeys(due))


def site_admins_alert(*, subject: str, body: str) -> bool:
    """Mail every active site admin who takes notifications (a Logbook break, say). Never raises."""
    try:
        admins = list(User.objects.filter(is_superuser=True, is_active=True))
        recipients = recipients_of(admins)
        if not recipients:
            return False
        return _send(f"[Passport] {subject}", body, recipients)[0]
    except Exception:
        logger.exception("the site admins could not be told: %s", subject)
        return False
