"""What each notification says and to whom, and whether a request's state bears a kind out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts import permissions
from accounts.models import Membership, RequestApproval, User
from audit.models import LogbookEntry
from audit.selectors import logbook_request_entries
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
    # An approval no longer stands (``access_request_reopen_if_approvals_short``): the requester hears
    # it waits again (the approvers are asked again by AWAITING_APPROVAL).
    BACK_TO_PENDING = "back_to_pending"
    # The requester took more time: the approvers who approved it are told, for their information.
    EXTENDED = "extended"


KINDS = (
    Kind.AWAITING_APPROVAL,
    Kind.APPROVED,
    Kind.REJECTED,
    Kind.FAILED,
    Kind.EXPIRING,
    Kind.REVOKED,
    Kind.EXPIRED_UNAPPROVED,
    Kind.BACK_TO_PENDING,
    Kind.EXTENDED,
)

# The kinds that may be told more than once about one request, each time of another event: the
# Logbook entry that marks the event (``event_of``). Asked again and approved again after a request
# went back to pending; each extension.
_EVENT_ACTIONS = {
    Kind.AWAITING_APPROVAL: "request.back_to_pending",
    Kind.APPROVED: "request.back_to_pending",
    Kind.BACK_TO_PENDING: "request.back_to_pending",
    Kind.EXTENDED: "request.extended",
}


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


def notification_message(
    kind: str, request_id: int, *, ends_at: datetime | None = None, event_id: int = 0
) -> Message | None:
    """The mail of ``kind`` about the request, or None when the request is gone. ``ends_at``: the
    end an "ends soon" warning is about (the one its receipt was claimed for); ``event_id``: the
    event it tells of (``event_of``, the one its receipt was claimed for)."""
    access_request = (
        AccessRequest.objects.select_related("account", "requester", "decided_by").filter(pk=request_id).first()
    )
    if access_request is None:
        return None
    account = access_request.account
    requester = access_request.requester
    where = _one_line(f"{account.name} ({account.account_id})")
    instances = ", ".join(access_request.grants.values_list("instance__instance_id", flat=True))
    admin = "Administrator rights: asked for (sudo on Linux, Administrators on Windows)\n"
    # The portal's link first, then the fixed fields, each a line of its own, and the free text
    # last, indented: nothing a person typed (or an identity provider sent) starts a line, so no
    # reason or name can add a line that reads as Passport's, a link above the real one included.
    summary = (
        f"{_link(request_id)}\n\n"
        f"Request #{request_id} by {_one_line(requester.label)} on {where}\n"
        f"Instances: {instances}\n"
        + (admin if access_request.admin_rights else "")
        + (f"Ticket: {_one_line(access_request.ticket)}\n" if access_request.ticket else "")
        + f"Reason:\n{_indented(access_request.reason)}\n"
    )
    if kind == Kind.AWAITING_APPROVAL:
        # Nobody approves their own request (under any of their users), so nobody is asked to.
        again = "\nThe approval it had no longer stands: it waits for approval again.\n" if event_id else ""
        return Message(
            f"[Passport] Request #{request_id} awaits your approval",
            f"{_one_line(requester.label)} asks for access for {access_request.duration}.\n{again}\n{summary}",
            recipients_of(_deciders_of(access_request)),
        )
    if kind == Kind.APPROVED:
        by = _one_line(access_request.decided_by.label) if access_request.decided_by else "an automatic rule"
        return _to_requester(access_request, "approved", f"Approved by {by}. Your users are being created.", summary)
    if kind == Kind.REJECTED:
        by = _one_line(access_request.decided_by.label) if access_request.decided_by else "Passport"
        note = f"\nNote:\n{_indented(access_request.decision_note)}\n" if access_request.decision_note else ""
        return Message(
            f"[Passport] Request #{request_id} rejected",
            f"Rejected by {by}.{note}\n{summary}",
            recipients_of([requester]),
        )
    if kind == Kind.FAILED:
        failed = "Passport could not create your users on any instance; the request has ended."
        return _to_requester(access_request, "failed", failed, summary)
    if kind == Kind.EXPIRING:
        end = ends_at or access_request.expires_at
        expires = timezone.localtime(end) if end else None
        ends = f"Your access ends at {expires:%Y-%m-%d %H:%M %Z}. Extend it in Passport if you need more time."
        return _to_requester(access_request, "ends soon", ends, summary)
    if kind == Kind.REVOKED:
        # Why, as recorded when it was revoked (a role lost, a deny rule): not guessed now.
        revoked = logbook_request_entries(action="request.revoked", request_ids=[request_id]).last()
        why = _why(revoked, "Passport revoked it.")
        ended = f"Your access has ended: {why} Your sessions were closed and your users are being removed."
        return _to_requester(access_request, "revoked", ended, summary)
    if kind == Kind.EXPIRED_UNAPPROVED:
        hours = settings.PASSPORT_PENDING_REQUEST_HOURS
        expired = (
            f"Your request was not approved within {hours} h of being made, so it has expired and can no "
            "longer be approved. Ask for access again in Passport if you still need it."
        )
        return _to_requester(access_request, "expired unapproved", expired, summary)
    if kind == Kind.BACK_TO_PENDING:
        went_back = logbook_request_entries(action="request.back_to_pending", request_ids=[request_id])
        why = _why(went_back.filter(pk=event_id).first(), "The approval it had no longer stands.")
        again = (
            f"Your request is no longer approved: {why} Nothing was handed out yet; the approvers "
            "are asked again, and you will hear when it is decided."
        )
        return _to_requester(access_request, "waits for approval again", again, summary)
    if kind == Kind.EXTENDED:
        return _extended_message(access_request, event_id, summary)
    raise ValueError(f"unknown notification {kind!r}")


def _to_requester(access_request: AccessRequest, headline: str, text: str, summary: str) -> Message:
    """The mail to the requester whose subject says the request's ``headline``: ``text``, then the summary."""
    return Message(
        f"[Passport] Request #{access_request.pk} {headline}",
        f"{text}\n\n{summary}",
        recipients_of([access_request.requester]),
    )


def _why(entry: LogbookEntry | None, otherwise: str) -> str:
    """The reason the Logbook ``entry`` recorded (its ``why``), on one line; ``otherwise`` without one."""
    return _one_line((entry.detail.get("why") if entry else None) or otherwise)


def _extended_message(access_request: AccessRequest, event_id: int, summary: str) -> Message | None:
    """To the people who approved the request (not every approver) and may still approve on its account:
    the end and total of the extension ``event_id`` (its ``request.extended`` entry, as recorded), for
    their information."""
    extended = logbook_request_entries(action="request.extended", request_ids=[access_request.pk]).filter(pk=event_id)
    entry = extended.first()
    if entry is None:
        return None
    end = entry.detail.get("expires_at")
    moment = parse_datetime(end) if isinstance(end, str) else None
    total = int(entry.detail.get("total_minutes") or 0)
    approvers = User.objects.filter(
        pk__in=RequestApproval.objects.filter(request_id=access_request.pk).values("approver_id")
    )
    approved = [*approvers, *([access_request.decided_by] if access_request.decided_by else [])]
    # Only those who may still approve on the account: one who has left it no longer reads its requests.
    account = access_request.account
    approved = [user for user in approved if permissions.can_approve_on(user, account)]
    requester = access_request.requester
    ends = f"{timezone.localtime(moment):%Y-%m-%d %H:%M %Z}" if moment else "later"
    return Message(
        f"[Passport] Request #{access_request.pk} extended",
        f"{_one_line(requester.label)} extended the access you approved: it now ends at {ends}, "
        f"{total // 60} h {total % 60:02d} min in all. For your information: nothing to do.\n\n{summary}",
        recipients_of([user for user in approved if not permissions.same_person(user, requester)]),
    )


def event_of(kind: str, access_request: AccessRequest) -> int:
    """Which event of ``kind`` a mail tells of, its receipt keyed to it: the id of the latest Logbook
    entry that marks one (``_EVENT_ACTIONS``), 0 before any and for a kind told once per request.
    A retried send finds the same one (sent once); a request back to pending, approved again or
    extended again is another event, and is told too."""
    action = _EVENT_ACTIONS.get(kind)
    if action is None:
        return 0
    latest = logbook_request_entries(action=action, request_ids=[access_request.pk]).values_list("id", flat=True)
    return latest.last() or 0


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
    if kind == Kind.BACK_TO_PENDING:
        went_back = logbook_request_entries(action="request.back_to_pending", request_ids=[access_request.pk])
        return status == RequestStatus.PENDING and went_back.exists()
    if kind == Kind.EXTENDED:
        return status == RequestStatus.ACTIVE and bool(access_request.extended_by)
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


def _deciders_of(access_request: AccessRequest) -> list[User]:
    """Who is asked to decide: the account's approvers but the requester (nobody approves their own
    request, under any of their users); when none of them is active, the site admins, who approve
    on every account (``permissions.can_approve_on``), so a request is never left with nobody asked."""
    requester = access_request.requester
    approvers = [
        user
        for user in approvers_of(access_request.account_id)
        if user.is_active and not permissions.same_person(user, requester)
    ]
    if approvers:
        return approvers
    admins = User.objects.filter(is_superuser=True, is_active=True)
    return [user for user in admins if not permissions.same_person(user, requester)]
