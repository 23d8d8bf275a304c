"""Approvers decide: approve (once, or one of several approvals the account asks for) and reject."""

from __future__ import annotations

from collections.abc import Collection

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import permissions
from accounts.approval_policies import (
    ApprovalStanding,
    approval_of_person,
    approval_policy_hold,
    approval_record,
    approvals_required,
    approvals_standing,
    decision_standing_why_not,
)
from accounts.models import Membership, RequestApproval, User
from audit.services import logbook_append
from core.errors import RequestRuleError
from core.text import unsafe_text_message
from requests_app import rules
from requests_app.models import DECISION_NOTE_MAX, AccessRequest, RequestStatus
from requests_app.selectors import access_request_approve_check
from requests_app.services.lifecycle.common import (
    _after_approval,
    _instance_ids,
    _refuse,
    _reject,
    _status_error,
    _transition,
)


def _check_note(note: str) -> None:
    """The decision note is shown to the requester, in emails and in the Logbook: plain text only,
    and all of it (a longer note is refused, never cut: its last words might be the point)."""
    if len(note or "") > DECISION_NOTE_MAX:
        raise RequestRuleError(
            {"note": [f"The note has {len(note)} characters; keep it to at most {DECISION_NOTE_MAX}."]}
        )
    unsafe = unsafe_text_message("The note", note or "")
    if unsafe:
        raise RequestRuleError({"note": [unsafe]})


def access_request_approve(*, access_request: AccessRequest, approver: User, note: str = "") -> AccessRequest:
    _check_note(note)
    # The rule reads the row as it is now, not as the caller loaded it; the conditional
    # UPDATE below still decides races.
    access_request.refresh_from_db()
    # Who, which state, and the requester still an Admin of the account: the role was checked when
    # the request was made, and may have been lowered or removed since (by an admin, or by the
    # identity provider at a sign-in). Then the request stays pending: the approver rejects it, or
    # approves once the role is back. The pages offer Approve by the same check.
    check = access_request_approve_check(access_request=access_request, user=approver)
    if not check:
        if check.code == "conflict" and (
            access_request.decided_by_id == approver.pk
            and access_request.status not in (RequestStatus.REJECTED, RequestStatus.CANCELLED)
        ):
            return access_request  # the same approval again: nothing to do
        raise _refuse(
            access_request, approver, action="approve", check=check, instance_ids=_instance_ids(access_request)
        )
    with transaction.atomic():
        # The policy (its deny rules, the approvals it asks for) read under the account's row: a
        # save of it waits for this approval and weighs it, or this waits for the save and reads it.
        approval_policy_hold(account_id=access_request.account_id)
        required = approvals_required(access_request.account)
        second = _second_approval_refusal(access_request, approver=approver) if required > 1 else None
        check = second if second is not None else _approve_check_locked(access_request, approver=approver)
        if check and required > 1 and _approvals_short(access_request, approver=approver, required=required, note=note):
            return access_request
        if check:
            _approve(access_request, approver=approver, note=note)
    if second is not None:
        raise _refuse(access_request, approver, action="approve", check=second)
    if not check:
        # Refused after the transaction, which changed nothing: the Logbook entry must not roll back with it.
        raise _refuse(
            access_request, approver, action="approve", check=check, instance_ids=_instance_ids(access_request)
        )
    return access_request


def _second_approval_refusal(access_request: AccessRequest, *, approver: User) -> rules.ActionCheck | None:
    """One person is one approval, under whichever of their users (``approval_record`` counts so):
    the refusal of this one when another user of theirs approved already; None when none did."""
    earlier = approval_of_person(request_id=access_request.pk, approver=approver)
    if earlier is not None and earlier.approver_id != approver.pk:
        return rules.second_approval_refusal(access_request, earlier.approver)
    return None


def _approve(access_request: AccessRequest, *, approver: User, note: str) -> None:
    moved = _transition(
        access_request,
        from_statuses=[RequestStatus.PENDING],
        status=RequestStatus.APPROVED,
        decided_by=approver,
        decided_at=timezone.now(),
        decision_note=note,
    )
    if not moved:
        if access_request.decided_by_id == approver.pk and access_request.status not in (
            RequestStatus.REJECTED,
            RequestStatus.CANCELLED,
        ):
            return  # the same approval again: nothing to do
        raise _status_error(access_request, "approved")
    logbook_append(
        action="request.approved",
        actor=approver,
        account=access_request.account,
        request_id=access_request.pk,
        instance_ids=_instance_ids(access_request),
        detail={"note": note},
    )
    _after_approval(access_request.pk)


def _approve_check_locked(access_request: AccessRequest, *, approver: User) -> rules.ActionCheck:
    """``access_request_approve_check`` again, on rows this transaction holds until it commits.

    The check before the transaction read the approver and the requester unlocked, so an admin's
    change of either committed since (approving or the membership taken away, the requester's role
    lowered, a deactivation) would be approved past; and one not yet committed would not see this
    approval, so its revocation would leave the request approved. Here the request's row is locked,
    then the people the approval weighs and their memberships of the account
    (``_people_locked``): a change of them not yet committed is waited for, and weighed as it ends;
    one that comes later waits for this commit, and finds the request approved.
    """
    locked = AccessRequest.objects.select_for_update().get(pk=access_request.pk)
    if locked.status != RequestStatus.PENDING:
        return rules.ALLOWED  # let the transition report what happened meanwhile
    people = _people_locked(locked, approver=approver)
    locked.account, locked.requester = access_request.account, people[locked.requester_id]
    return access_request_approve_check(access_request=locked, user=people[approver.pk])


def _people_locked(access_request: AccessRequest, *, approver: User) -> dict[int, User]:
    """Lock the people an approval weighs, as read now: the requester (still an Admin of the
    account?), this approver and those who approved already (still approvers?); their User rows
    by pk, then their Membership rows of the account by pk, the lock order of this package's
    docstring (``approvals_standing(lock=True)`` takes the approvers' again, held by then)."""
    given = RequestApproval.objects.filter(request_id=access_request.pk).values_list("approver_id", flat=True)
    ids = {access_request.requester_id, approver.pk, *given}
    # FOR NO KEY UPDATE: waits for an UPDATE or DELETE of these rows, not for rows that only refer to them.
    people = {
        person.pk: person for person in User.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("pk")
    }
    memberships = Membership.objects.select_for_update(no_key=True).filter(
        user_id__in=ids, account=access_request.account
    )
    list(memberships.order_by("pk").values_list("pk", flat=True))
    return people


def _approvals_short(access_request: AccessRequest, *, approver: User, required: int, note: str) -> bool:
    """Record one of several approvals the account asks for; True while more are needed.

    The request row is locked (``_approve_check_locked``, whose check this one passed), so two
    approvers at once count one after the other; the count then reads its approvers' people and
    memberships locked (the lock order is in this package's docstring), so it waits for a change of
    them not yet committed and counts what it made.
    """
    locked = AccessRequest.objects.select_for_update().get(pk=access_request.pk)
    if locked.status != RequestStatus.PENDING:
        return False  # let the transition report what happened meanwhile
    count, created = approval_record(
        request_id=access_request.pk, account=access_request.account, approver=approver, note=note
    )
    if created:
        logbook_append(
            action="request.approval_recorded",
            actor=approver,
            account=access_request.account,
            request_id=access_request.pk,
            detail={"approvals": count, "required": required, "rule": f"approvals_required={required}"},
        )
    access_request.refresh_from_db()
    return count < required


def access_request_reject(*, access_request: AccessRequest, approver: User, note: str = "") -> AccessRequest:
    _check_note(note)
    # The rule reads the row as it is now, not as the caller loaded it; the conditional
    # UPDATE below still decides races.
    access_request.refresh_from_db()
    check = rules.reject_check(access_request, approver)
    if not check:
        if check.code == "conflict" and access_request.status == RequestStatus.REJECTED:
            return access_request
        raise _refuse(access_request, approver, action="reject", check=check)
    with transaction.atomic():
        rejected = _reject(
            access_request,
            from_status=RequestStatus.PENDING,
            decided_by=approver,
            note=note,
            detail={"note": note},
        )
        if not rejected:
            if access_request.status == RequestStatus.REJECTED:
                return access_request
            raise _status_error(access_request, "rejected")
    return access_request


_WAITING = [RequestStatus.PENDING, RequestStatus.APPROVED]


def access_request_approvals_discounted(
    *, approver_id: int, account_ids: Collection[int] | None, actor: User | None, via: str
) -> list[int]:
    """Record in the Logbook (``request.approval_discounted``) each approval this person gave on a
    request still pending, or approved and not yet provisioning (on these accounts; None: on any),
    that no longer counts: they may no longer decide there (``approvals_standing``), as after their
    approving, membership or account was taken away. Returns the ids of those requests. Called in
    the transaction that took it away. An approved one goes back to pending when provisioning
    starts (``access_request_reopen_if_approvals_short``).
    """
    given = RequestApproval.objects.filter(approver_id=approver_id).values("request_id")
    waiting = AccessRequest.objects.select_related("account", "decided_by").filter(
        Q(pk__in=given, status__in=_WAITING)
        | Q(decided_by_id=approver_id, status=RequestStatus.APPROVED)  # one approval: none recorded apart
    )
    if account_ids is not None:
        waiting = waiting.filter(account_id__in=account_ids)
    discounted: list[int] = []
    for access_request in waiting.order_by("pk"):
        standing = approvals_standing(request_id=access_request.pk, account=access_request.account)
        # Its right to decide: one that stopped counting for who its approver is was recorded then.
        lost = [
            one for one in standing if one.approval.approver_id == approver_id and not one.counts and not one.as_person
        ]
        if lost:
            username, why = lost[0].approval.approver.username, lost[0].why_not
        elif _decided_alone(access_request, standing, approver_id):
            assert access_request.decided_by is not None
            username = access_request.decided_by.username
            why = _decider_why_not(access_request, access_request.decided_by, as_person=False)
        else:
            continue
        if why:
            _discount_record(access_request, standing, [(username, why)], actor=actor, via=via)
            discounted.append(access_request.pk)
    return discounted


def access_request_approvals_reweighed(*, user_id: int, actor: User | None, via: str) -> list[int]:
    """Record in the Logbook (``request.approval_discounted``) each approval that stops counting now
    that this person's email (their ``email_key``) changed: approvals are weighed by who their
    approvers are now (``approvals_standing``). On each request still pending, or approved and not
    yet provisioning, that they approved, decided alone or asked for: their own approval, one by
    the requester in person, or one of another user of theirs that now counts as theirs already.
    Returns the ids of those requests. Called in the transaction that saved the email, as a loss of
    approving is (``access_request_approvals_discounted``); an approved one goes back to pending when
    provisioning starts (``access_request_reopen_if_approvals_short``). Nothing else changes: a
    request already provisioning or active keeps its access, as after an approver's loss of rights.
    """
    person = User.objects.filter(pk=user_id).first()
    if person is None:
        return []
    given = RequestApproval.objects.filter(approver_id=user_id).values("request_id")
    waiting = AccessRequest.objects.select_related("account", "requester", "decided_by").filter(
        Q(pk__in=given, status__in=_WAITING)
        | Q(decided_by_id=user_id, status=RequestStatus.APPROVED)
        | Q(requester_id=user_id, status__in=_WAITING)
    )
    discounted: list[int] = []
    for access_request in waiting.order_by("pk"):
        standing = approvals_standing(request_id=access_request.pk, account=access_request.account)
        theirs = any(one.approval.approver_id == user_id for one in standing)
        lost = [
            (one.approval.approver.username, one.why_not)
            for one in standing
            if one.as_person
            and (
                one.approval.approver_id == user_id
                or (theirs and permissions.same_person(one.approval.approver, person))
                or (
                    access_request.requester_id == user_id
                    and permissions.same_person(one.approval.approver, access_request.requester)
                )
            )
        ]
        decider = access_request.decided_by
        # A decision alone, weighed only for who the decider is now: a loss of their right to decide
        # was recorded when it happened.
        if (
            not lost
            and decider is not None
            and _decided_alone(access_request, standing, decider.pk)
            and not _decider_why_not(access_request, decider, as_person=False)
        ):
            why = _decider_why_not(access_request, decider)
            lost = [(decider.username, why)] if why else []
        if lost:
            _discount_record(access_request, standing, lost, actor=actor, via=via)
            discounted.append(access_request.pk)
    return discounted


def _decider_why_not(access_request: AccessRequest, decider: User, *, as_person: bool = True) -> str:
    return decision_standing_why_not(
        approver=decider, account=access_request.account, request_id=access_request.pk, as_person=as_person
    )


def _decided_alone(access_request: AccessRequest, standing: list[ApprovalStanding], approver_id: int) -> bool:
    """Approved by this person's decision alone: one approval asked for, none recorded apart."""
    return (
        access_request.status == RequestStatus.APPROVED
        and access_request.decided_by_id == approver_id
        and not any(one.approval.approver_id == approver_id for one in standing)
    )


def _discount_record(
    access_request: AccessRequest,
    standing: list[ApprovalStanding],
    lost: list[tuple[str, str]],
    *,
    actor: User | None,
    via: str,
) -> None:
    """One ``request.approval_discounted`` for each approval that stopped counting: (approver's username, why)."""
    for username, why in lost:
        logbook_append(
            action="request.approval_discounted",
            actor=actor,
            account=access_request.account,
            request_id=access_request.pk,
            detail={
                "approver": username,
                "why": why,
                "via": via,
                "approvals": sum(1 for one in standing if one.counts),
                "required": approvals_required(access_request.account),
            },
        )
