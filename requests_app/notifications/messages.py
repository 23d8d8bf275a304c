"""What each notification says and to whom, and whether a request's state bears a kind out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.urls import reverse
from django.utils import timezone

from accounts import permissions
from accounts.models import Membership, User
from accounts.permissions import access_role_refusal
from core.links import portal_url
from core.text import unsafe_characters
from requests_app.models import AccessRequest, EndReason, RequestStatus


class Kind:
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    FAILED = "failed"
    EXPIRING = "expiring"
    REVOKED = "revoked"
    # Nobody approved it within PASSPORT_PENDING_REQUEST_HOURS: the expiry sweep ended it.
    EXPIRED_UNAPPROVED = "expired_unapproved"


KINDS = (
    Kind.AWAITING_APPROVAL,
    Kind.APPROVED,
    Kind.REJECTED,
    Kind.FAILED,
    Kind.EXPIRING,
    Kind.REVOKED,
    Kind.EXPIRED_UNAPPROVED,
)


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    recipients: list[str]


def recipients_of(users: list[User]) -> list[str]:
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


def _one_line(text: object) -> str:
    """A name or a ticket as one line: every run of whitespace (newlines included) is one space."""
    return " ".join(str(text).split())


def _indented(text: object) -> str:
    """Free text (a reason, a note) with every line indented, so none starts a line of the mail."""
    return "\n".join(f"    {line}" for line in str(text).splitlines() or [""])


def _link(request_id: int) -> str:
    return portal_url(reverse("requests:detail", args=[request_id]))


def notification_message(kind: str, request_id: int, *, ends_at: datetime | None = None) -> Message | None:
    """The mail of ``kind`` about the request, or None when the request is gone. ``ends_at``: the
    end an "ends soon" warning is about (the one its receipt was claimed for)."""
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
            recipients_of(approvers),
        )
    if kind == Kind.APPROVED:
        by = _one_line(access_request.decided_by.label) if access_request.decided_by else "an automatic rule"
        return Message(
            f"[Passport] Request #{request_id} approved",
            f"Approved by {by}. Your users are being created.\n\n{summary}",
            recipients_of([requester]),
        )
    if kind == Kind.REJECTED:
        by = _one_line(access_request.decided_by.label) if access_request.decided_by else "Passport"
        note = f"\nNote:\n{_indented(access_request.decision_note)}\n" if access_request.decision_note else ""
        return Message(
            f"[Passport] Request #{request_id} rejected",
            f"Rejected by {by}.{note}\n{summary}",
            recipients_of([requester]),
        )
    if kind == Kind.FAILED:
        return Message(
            f"[Passport] Request #{request_id} failed",
            f"Passport could not create your users on any instance; the request has ended.\n\n{summary}",
            recipients_of([requester]),
        )
    if kind == Kind.EXPIRING:
        end = ends_at or access_request.expires_at
        expires = timezone.localtime(end) if end else None
        return Message(
            f"[Passport] Request #{request_id} ends soon",
            f"Your access ends at {expires:%Y-%m-%d %H:%M %Z}. Extend it in Passport if you need more time.\n\n"
            f"{summary}",
            recipients_of([requester]),
        )
    if kind == Kind.REVOKED:
        why = access_role_refusal(requester, account) or "Your role on the account changed."
        return Message(
            f"[Passport] Request #{request_id} revoked",
            f"Your access has ended: {_one_line(why)} Your sessions were closed and your users are being removed."
            f"\n\n{summary}",
            recipients_of([requester]),
        )
    if kind == Kind.EXPIRED_UNAPPROVED:
        hours = settings.PASSPORT_PENDING_REQUEST_HOURS
        return Message(
            f"[Passport] Request #{request_id} expired unapproved",
            f"Your request was not approved within {hours} h of being made, so it has expired and can no "
            f"longer be approved. Ask for access again in Passport if you still need it.\n\n{summary}",
            recipients_of([requester]),
        )
    raise ValueError(f"unknown notification {kind!r}")


def matches_state(kind: str, access_request: AccessRequest, *, now: datetime) -> bool:
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
    if kind == Kind.EXPIRED_UNAPPROVED:
        return access_request.expired_unapproved
    return False


def warned_end(kind: str, access_request: AccessRequest) -> datetime | None:
    """The end an "ends soon" warning is about: the request's end now, the one ``matches_state``
    checks; its receipt is keyed to it, so after an extension the new end is warned of too.
    None for every other kind."""
    return access_request.expires_at if kind == Kind.EXPIRING else None


def approvers_of(account_id: int) -> list[User]:
    return list(
        User.objects.filter(pk__in=Membership.objects.filter(account_id=account_id, can_approve=True).values("user_id"))
    )
