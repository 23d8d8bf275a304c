"""A notification's receipt: first a claim, then a send.

A sender claims a notification by inserting its receipt, unique per kind, request and event (the
Logbook entry of the event told of, for a kind that may happen again: ``messages.event_of``) and, for
the "ends soon" warning, per end time warned of, so of two deliveries racing only one mails.
It counts as sent only once the mail server has taken the mail. A claim left unsent (the server
was down or refused it, building the mail failed, the sender was killed mid-send) is claimed
again once it is ``CLAIM_STALE`` old, by a later delivery or by the notification sweep
(``requests_due_for_notice``), up to ``MAX_ATTEMPTS`` times.

A send to many recipients (one message each) may take longer than ``CLAIM_STALE``: its sender
renews the claim after each recipient (``receipt_claim_renew``), so only a sender that stopped
moving loses it, and a sender that finds its claim taken over stops mailing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F

from accounts.models import NotificationReceipt

# Longer than one recipient's message takes (EMAIL_TIMEOUT), the claim being renewed after each, so
# a claim being sent is not taken over.
CLAIM_STALE = timedelta(minutes=5)
# About every five minutes for twelve hours, then given up (a recipient the server always refuses).
MAX_ATTEMPTS = 144


def receipt_claim(
    *, kind: str, request_id: int, expires_at: datetime | None, event_id: int = 0, now: datetime
) -> int | None:
    """Claim the notification: the attempt this is (1 for the first), or None when it was sent
    already, another sender holds a fresh claim on it, or it was given up."""
    try:
        with transaction.atomic():
            NotificationReceipt.objects.create(
                kind=kind, request_id=request_id, expires_at=expires_at, event_id=event_id, claimed_at=now
            )
        return 1
    except IntegrityError:
        pass
    # A conditional UPDATE: of two senders taking over the same stale claim, only one matches.
    unsent = NotificationReceipt.objects.filter(
        kind=kind, request_id=request_id, expires_at=expires_at, event_id=event_id, sent_at__isnull=True
    )
    taken = unsent.filter(claimed_at__lt=now - CLAIM_STALE, attempts__lt=MAX_ATTEMPTS).update(
        claimed_at=now, attempts=F("attempts") + 1
    )
    if not taken:
        return None
    return unsent.filter(claimed_at=now).values_list("attempts", flat=True).first()


def receipt_claim_renew(
    *, kind: str, request_id: int, expires_at: datetime | None, event_id: int = 0, held: datetime, now: datetime
) -> bool:
    """Move the claim this sender holds (claimed at ``held``) to ``now``, so a slow send is not taken
    for an abandoned one. False when it is no longer this sender's (taken over, or sent): then it
    stops. A conditional UPDATE keyed on the claim time, as ``receipt_claim`` takes one over."""
    return bool(
        NotificationReceipt.objects.filter(
            kind=kind,
            request_id=request_id,
            expires_at=expires_at,
            event_id=event_id,
            sent_at__isnull=True,
            claimed_at=held,
        ).update(claimed_at=now)
    )


def receipt_sent(*, kind: str, request_id: int, expires_at: datetime | None, event_id: int = 0, now: datetime) -> None:
    """The mail server took the mail (or nobody was to be told): nobody sends it again."""
    NotificationReceipt.objects.filter(
        kind=kind, request_id=request_id, expires_at=expires_at, event_id=event_id, sent_at__isnull=True
    ).update(sent_at=now)


def unsent_receipts_drop(*, kind: str, request_id: int, now: datetime, keep_event_id: int | None = None) -> int:
    """Forget this kind's unsent claims on the request that nobody is sending now: its state no
    longer bears them out (decided before the approvers heard, extended past the end warned of).
    ``keep_event_id``: all but that event's, superseded by it (a later event of the kind is told
    instead: the request went back to pending again), so the retry list does not keep them."""
    stale = NotificationReceipt.objects.filter(
        kind=kind, request_id=request_id, sent_at__isnull=True, claimed_at__lt=now - CLAIM_STALE
    )
    if keep_event_id is not None:
        stale = stale.exclude(event_id=keep_event_id)
    return stale.delete()[0]


def receipts_to_retry(*, now: datetime, limit: int = 500) -> list[tuple[str, int]]:
    """Claims never sent that may be claimed again, oldest first: (kind, request id)."""
    return list(
        NotificationReceipt.objects.filter(
            sent_at__isnull=True, claimed_at__lt=now - CLAIM_STALE, attempts__lt=MAX_ATTEMPTS
        )
        .order_by("claimed_at")
        .values_list("kind", "request_id")[:limit]
    )
