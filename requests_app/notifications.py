"""Email notifications about access requests, through Django's email backend.

Services call ``notification_enqueue`` inside their transaction; the mail is handed to a
Celery task only after commit, so a rolled-back change sends nothing and a slow mail server
never holds up a request. Sending claims a ``NotificationReceipt`` first, so a notification
goes out at most once per request and kind even when the task runs twice; with the broker
down it is sent from the process that made the change (``notification_dispatch``). Failures are
logged, never raised: a lost email must not undo or block access.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from accounts import permissions
from accounts.models import Membership, NotificationReceipt, User
from accounts.permissions import access_role_refusal
from core.dispatch import task_send
from core.text import unsafe_characters
from requests_app.models import AccessRequest, EndReason, RequestStatus

logger = logging.getLogger(__name__)


class Kind:
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    FAILED = "failed"
    EXPIRING = "expiring"
    REVOKED = "revoked"


KINDS = (Kind.AWAITING_APPROVAL, Kind.APPROVED, Kind.REJECTED, Kind.FAILED, Kind.EXPIRING, Kind.REVOKED)


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    recipients: list[str]


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


def _recipients(users: list[User]) -> list[str]:
    return sorted(
        {
            user.email
            for user in users
            if user.email and user.is_active and user.email_notifications and _one_address(user.email)
        }
    )


def _one_address(email: str) -> bool:
    """Whether ``email`` is one address (not a list, nor a header after a newline)."""
    try:
        validate_email(email)  # lets through a domain holding a bidi override
    except ValidationError:
        return False
    return not unsafe_characters(email)


def _send(subject: str, body: str, recipients: list[str]) -> bool:
    """One message per recipient over one connection, so that one address the server refuses
    keeps nobody else from hearing; nobody sees who else was told. Whether any went out."""
    sent = False
    with get_connection() as connection:
        for recipient in recipients:
            try:
                sent |= bool(EmailMessage(subject, body, None, [recipient], connection=connection).send())
            except Exception:
                logger.exception("a mail (%s) could not be sent to one of its %d recipients", subject, len(recipients))
    return sent


def _one_line(text: object) -> str:
    """A name or a ticket as one line: every run of whitespace (newlines included) is one space."""
    return " ".join(str(text).split())


def _indented(text: object) -> str:
    """Free text (a reason, a note) with every line indented, so none starts a line of the mail."""
    return "\n".join(f"    {line}" for line in str(text).splitlines() or [""])


def _link(request_id: int) -> str:
    return settings.PASSPORT_BASE_URL.rstrip("/") + reverse("requests:detail", args=[request_id])


def _message(kind: str, request_id: int) -> Message | None:
    access_request = (
        AccessRequest.objects.select_related("account", "requester", "decided_by").filter(pk=request_id).first()
    )
    if access_request is None:
        return None
    account = access_request.account
    requester = access_request.requester
    where = _one_line(f"{account.name} ({account.account_id})")
    instances = ", ".join(access_request.grants.values_list("instance__instance_id", flat=True))
    # The portal's link first, then the fixed fields, each a line of its own, and the free text
    # last, indented: nothing a person typed (or an identity provider sent) starts a line, so no
    # reason or name can add a line that reads as Passport's, a link above the real one included.
    summary = (
        f"{_link(request_id)}\n\n"
        f"Request #{request_id} by {_one_line(requester.label)} on {where}\n"
        f"Instances: {instances}\n"
        + (f"Ticket: {_one_line(access_request.ticket)}\n" if access_request.ticket else "")
        + f"Reason:\n{_indented(access_request.reason)}\n"
    )
    if kind == Kind.AWAITING_APPROVAL:
        # Nobody approves their own request (under any of their users), so nobody is asked to.
        approvers = [user for user in approvers_of(account.pk) if not permissions.same_person(user, requester)]
        return Message(
            f"[Passport] Request #{request_id} awaits your approval",
            f"{_one_line(requester.label)} asks for access for {access_request.duration}.\n\n{summary}",
            _recipients(approvers),
        )
    if kind == Kind.APPROVED:
        by = _one_line(access_request.decided_by.label) if access_request.decided_by else "an automatic rule"
        return Message(
            f"[Passport] Request #{request_id} approved",
            f"Approved by {by}. Your users are being created.\n\n{summary}",
            _recipients([requester]),
        )
    if kind == Kind.REJECTED:
        by = _one_line(access_request.decided_by.label) if access_request.decided_by else "Passport"
        note = f"\nNote:\n{_indented(access_request.decision_note)}\n" if access_request.decision_note else ""
        return Message(
            f"[Passport] Request #{request_id} rejected",
            f"Rejected by {by}.{note}\n{summary}",
            _recipients([requester]),
        )
    if kind == Kind.FAILED:
        return Message(
            f"[Passport] Request #{request_id} failed",
            f"Passport could not create your users on any instance; the request has ended.\n\n{summary}",
            _recipients([requester]),
        )
    if kind == Kind.EXPIRING:
        expires = timezone.localtime(access_request.expires_at) if access_request.expires_at else None
        return Message(
            f"[Passport] Request #{request_id} ends soon",
            f"Your access ends at {expires:%Y-%m-%d %H:%M %Z}. Extend it in Passport if you need more time.\n\n"
            f"{summary}",
            _recipients([requester]),
        )
    if kind == Kind.REVOKED:
        why = access_role_refusal(requester, account) or "Your role on the account changed."
        return Message(
            f"[Passport] Request #{request_id} revoked",
            f"Your access has ended: {_one_line(why)} Your sessions were closed and your users are being removed."
            f"\n\n{summary}",
            _recipients([requester]),
        )
    raise ValueError(f"unknown notification {kind!r}")


def _matches_state(kind: str, access_request: AccessRequest, *, now: datetime) -> bool:
    """Whether the request is in the state a ``kind`` mail tells of (or was: a request approved then
    ended was approved). The task's arguments come from the broker, which is no witness of that."""
    status = access_request.status
    if kind == Kind.AWAITING_APPROVAL:
        return status == RequestStatus.PENDING
    if kind == Kind.APPROVED:
        return access_request.decided_at is not None and status not in (RequestStatus.PENDING, RequestStatus.REJECTED)
    if kind == Kind.REJECTED:
        return status == RequestStatus.REJECTED
    if kind == Kind.FAILED:
        return status == RequestStatus.FAILED
    if kind == Kind.EXPIRING:
        warning = timedelta(minutes=settings.PASSPORT_EXPIRY_WARNING_MINUTES)
        expires = access_request.expires_at
        return status == RequestStatus.ACTIVE and expires is not None and now < expires <= now + warning
    if kind == Kind.REVOKED:
        return access_request.end_reason == EndReason.REVOKED
    return False


def notification_send(*, kind: str, request_id: int) -> bool:
    """Send one notification now, at most once per request and kind. Returns whether mail went out.

    A kind the request's state does not bear out (an "approved" mail for a pending request) is
    refused, logged and not claimed: whoever can reach the broker can name any kind.
    """
    access_request = AccessRequest.objects.filter(pk=request_id).first()
    if access_request is None or not _matches_state(kind, access_request, now=timezone.now()):
        logger.warning(
            "a %r notification for request #%s was refused: the request is not in that state", kind, request_id
        )
        return False
    try:
        with transaction.atomic():
            NotificationReceipt.objects.create(kind=kind, request_id=request_id)
    except IntegrityError:
        return False  # sent already (a duplicate delivery or a second sweep)
    try:
        message = _message(kind, request_id)
        if message is None or not message.recipients:
            return False
        return _send(message.subject, message.body, message.recipients)
    except Exception:
        logger.exception("the %s notification for request #%s could not be sent", kind, request_id)
        return False


def requests_due_for_notice(*, now: datetime | None = None) -> list[tuple[str, int]]:
    """Requests ending within the warning window, and newly failed ones, not yet told."""
    moment = now or timezone.now()
    warning = timedelta(minutes=settings.PASSPORT_EXPIRY_WARNING_MINUTES)
    due: list[tuple[str, int]] = []
    told_expiring = NotificationReceipt.objects.filter(kind=Kind.EXPIRING).values("request_id")
    expiring = (
        AccessRequest.objects.filter(status=RequestStatus.ACTIVE, expires_at__gt=moment)
        .filter(expires_at__lte=moment + warning)
        .exclude(pk__in=told_expiring)
        .values_list("pk", flat=True)[:500]
    )
    due += [(Kind.EXPIRING, pk) for pk in expiring]
    # Failure is decided by the provisioning workers; the sweep tells the requester. Only recent
    # failures, so switching this on does not mail about every failure in history.
    told_failed = NotificationReceipt.objects.filter(kind=Kind.FAILED).values("request_id")
    failed = (
        AccessRequest.objects.filter(status=RequestStatus.FAILED, ended_at__gte=moment - timedelta(hours=1))
        .exclude(pk__in=told_failed)
        .values_list("pk", flat=True)[:500]
    )
    due += [(Kind.FAILED, pk) for pk in failed]
    return due


def approvers_of(account_id: int) -> list[User]:
    return list(
        User.objects.filter(pk__in=Membership.objects.filter(account_id=account_id, can_approve=True).values("user_id"))
    )


def site_admins_alert(*, subject: str, body: str) -> bool:
    """Mail every active site admin who takes notifications (a Logbook break, say). Never raises."""
    try:
        admins = list(User.objects.filter(is_superuser=True, is_active=True))
        recipients = _recipients(admins)
        if not recipients:
            return False
        return _send(f"[Passport] {subject}", body, recipients)
    except Exception:
        logger.exception("the site admins could not be told: %s", subject)
        return False
