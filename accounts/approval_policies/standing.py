"""Whether each approval given on a request counts now, by who its approver is and what they may
decide (``approvals_standing``), and recording one (``approval_record``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from accounts import permissions
from accounts.models import AwsAccount, Membership, RequestApproval, User


def approval_of_person(*, request_id: int, approver: User) -> RequestApproval | None:
    """The approval this person has already given the request, under this user or another of theirs."""
    return (
        RequestApproval.objects.filter(request_id=request_id, approver__in=permissions.same_person_users(approver))
        .select_related("approver")
        .order_by("id")
        .first()
    )


@dataclass(frozen=True)
class ApprovalStanding:
    """One approval given on a request, and whether it counts now (``approvals_standing``)."""

    approval: RequestApproval
    counts: bool
    why_not: str = ""
    # It does not count for who its approver is now (``_person_why_not``), not for their rights.
    as_person: bool = False


def _requester_of(request_id: int) -> User | None:
    """The request's requester as stored now (by the relation's name: accounts imports no requests_app)."""
    return User.objects.filter(access_requests__pk=request_id).first()


def approvals_standing(*, request_id: int, account: AwsAccount, lock: bool = False) -> list[ApprovalStanding]:
    """Every approval given on the request, oldest first, each with whether it counts now.

    An approval counts while its approver may still decide on the account, as asked when they
    gave it (``permissions.can_approve_on``): still active, and a site admin or an approver of the
    account. One whose approving, membership or account was taken away since (by an admin, or the
    identity provider at a sign-in) no longer counts towards the approvals the account asks for;
    it counts again if that is given back while the request waits. It is weighed by who its
    approver is now, too (``permissions.same_person``, by the email keys as stored now: a SAML
    sign-in saves the identity provider's address, an admin may give two users one email): one by
    the requester in person counts no more, and of one person's approvals under several users only
    the oldest that counts does. Three queries for them all (four locked).

    ``lock``: the caller holds the request's row locked and acts on the count. The approvers'
    people and memberships are then read locked too (in the lock order of
    ``requests_app.services.lifecycle``), so a change of them not yet committed (an admin taking
    approving away, a deactivation, a new email) is waited for and counted, not read as it was
    before it. The requester's row is not locked here: approving holds it already
    (``decide._people_locked``), and a change of their email re-weighs the requests it touches
    (``access_request_approvals_reweighed``).
    """
    approvals = list(RequestApproval.objects.filter(request_id=request_id).select_related("approver").order_by("id"))
    approver_ids = sorted({approval.approver_id for approval in approvals})
    memberships = Membership.objects.filter(account=account, can_approve=True, user_id__in=approver_ids)
    if lock and approver_ids:
        # FOR NO KEY UPDATE: waits for an UPDATE or DELETE of these rows, not for rows that only refer to them.
        people = User.objects.select_for_update(no_key=True).filter(pk__in=approver_ids).order_by("pk")
        fresh = {person.pk: person for person in people}
        for approval in approvals:
            approval.approver = fresh.get(approval.approver_id, approval.approver)
        memberships = memberships.select_for_update(no_key=True).order_by("pk")
    approvers = set(memberships.values_list("user_id", flat=True))
    requester = _requester_of(request_id) if approvals else None
    return approvals_weighed(approvals, account=account, approving=approvers, requester=requester)


def approvals_weighed(
    approvals: Sequence[RequestApproval], *, account: AwsAccount, approving: Collection[int], requester: User | None
) -> list[ApprovalStanding]:
    """``approvals_standing``'s rule, of approvals read already (oldest first): ``approving``, the pks
    of their approvers who approve on the account now; ``requester``, the request's as stored now."""
    counted: dict[str, User] = {}
    standing: list[ApprovalStanding] = []
    for approval in approvals:
        why = _why_not(approval.approver, account, approves_there=approval.approver_id in approving)
        as_person = False
        if not why:
            why = _person_why_not(approval.approver, requester, counted)
            as_person = bool(why)
        standing.append(ApprovalStanding(approval, counts=not why, why_not=why, as_person=as_person))
    return standing


def _why_not(approver: User, account: AwsAccount, *, approves_there: bool) -> str:
    if not approver.is_active:
        return f"{approver.label} has been deactivated since."
    if not (approver.is_superuser or approves_there):
        return f"{approver.label} no longer approves requests for {account.name}."
    return ""


def _person_why_not(approver: User, requester: User | None, counted: dict[str, User] | None = None) -> str:
    """Why an approval whose approver may still decide does not count for who they are now: the
    requester in person (``permissions.same_person``), or a person whose approval under another
    user counts already (``counted``, by email key: the person is added to it when it counts)."""
    if requester is not None and permissions.same_person(approver, requester):
        return f"{approver.label} is now the same person as the requester, {requester.label}."
    key = approver.email_key
    if counted is None or not key:
        return ""
    if key in counted:
        return f"{approver.label} is the same person as {counted[key].label}, whose approval counts already."
    counted[key] = approver
    return ""


def decision_standing_why_not(
    *, approver: User, account: AwsAccount, request_id: int, lock: bool = False, as_person: bool = True
) -> str:
    """Why the decision this person made alone on the request (one approval asked for, none
    recorded apart) would not count now, by ``approvals_standing``'s rule; "" when it would.
    ``as_person`` False weighs only their right to decide, not whether they are now the requester
    in person. ``lock`` as there: their User row and membership of the account are read locked, a
    change not yet committed waited for."""
    people = User.objects.filter(pk=approver.pk)
    memberships = Membership.objects.filter(account=account, can_approve=True, user_id=approver.pk)
    if lock:
        # FOR NO KEY UPDATE, in the lock order of requests_app.services.lifecycle: the person, then the membership.
        people = people.select_for_update(no_key=True)
        memberships = memberships.select_for_update(no_key=True)
    person = people.first()
    if person is None:
        return f"{approver.label} no longer has a Passport account."
    approves_there = bool(list(memberships.values_list("pk", flat=True)))
    requester = _requester_of(request_id) if as_person else None
    return decider_why_not(person, account, approves_there=approves_there, requester=requester)


def decider_why_not(person: User, account: AwsAccount, *, approves_there: bool, requester: User | None) -> str:
    """``decision_standing_why_not``'s rule, of the decider read already: ``approves_there``, whether they
    approve on the account now; ``requester``, the request's as stored now (None: their right to
    decide alone is weighed, as ``as_person`` False)."""
    why = _why_not(person, account, approves_there=approves_there)
    return why or (_person_why_not(person, requester) if requester is not None else "")


def approvals_counted(*, request_id: int, account: AwsAccount, lock: bool = False) -> int:
    """How many of the request's approvals count now (``approvals_standing``, ``lock`` as there)."""
    return sum(1 for one in approvals_standing(request_id=request_id, account=account, lock=lock) if one.counts)


def approval_record(*, request_id: int, account: AwsAccount, approver: User, note: str = "") -> tuple[int, bool]:
    """Record one approver's yes. Returns the number of approvals that count now
    (``approvals_counted``) and whether this one is new.

    A person counts once, whichever of their users approves (``permissions.same_person``): two
    users of one person are not two approvals. The caller holds the request's row locked, so
    two users of one person approving at once are counted one after the other; the count waits
    for a change of the approvers not yet committed (``approvals_standing``, ``lock``)."""
    if approval_of_person(request_id=request_id, approver=approver) is not None:
        # This person again: counted once.
        return approvals_counted(request_id=request_id, account=account, lock=True), False
    created = True
    try:
        with transaction.atomic():
            RequestApproval.objects.create(request_id=request_id, approver=approver, note=note[:256])
    except IntegrityError:
        created = False  # the same approver again: counted once
    return approvals_counted(request_id=request_id, account=account, lock=True), created
