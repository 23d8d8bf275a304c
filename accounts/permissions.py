"""Who may do what: the one place the portal asks.

Every view, API endpoint, worker and (later) websocket goes through these, so a rule
changes everywhere at once. Queryset helpers filter, so an object a person may not see
is never loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Q, QuerySet

from accounts.models import AwsAccount, Membership, User
from audit.permissions import can_review_logbook


def is_site_admin(user: Any) -> bool:
    return bool(user.is_authenticated and user.is_superuser)


def is_approver_anywhere(user: Any) -> bool:
    if not user.is_authenticated:
        return False
    return user.is_superuser or Membership.objects.filter(user=user, can_approve=True).exists()


def approvable_accounts(user: User) -> QuerySet[AwsAccount]:
    if user.is_superuser:
        return AwsAccount.objects.all()
    return AwsAccount.objects.filter(memberships__user=user, memberships__can_approve=True)


def requestable_accounts(user: User) -> QuerySet[AwsAccount]:
    """Accounts where the person holds the Admin role, the only role that may ask for access."""
    return AwsAccount.objects.filter(memberships__user=user, memberships__role=Membership.Role.ADMIN)


def may_request_anywhere(user: Any) -> bool:
    """Whether the person may ask for access at all: Admin on some account (``requestable_accounts``).
    Decides whether the portal offers "New request" (the nav, the request list)."""
    return bool(user.is_authenticated and requestable_accounts(user).exists())


def visible_accounts(user: User) -> QuerySet[AwsAccount]:
    if user.is_superuser or user.is_auditor:
        return AwsAccount.objects.all()
    return AwsAccount.objects.filter(memberships__user=user).distinct()


def role_on(user: User, account: AwsAccount) -> str:
    membership = Membership.objects.filter(user=user, account=account).only("role").first()
    return membership.role if membership else Membership.Role.NONE


def roles_on(pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """``role_on`` for many (user pk, account pk) pairs in one query; a pair with no membership has no role."""
    wanted = set(pairs)
    if not wanted:
        return {}
    rows = Membership.objects.filter(
        user_id__in={user_pk for user_pk, _ in wanted}, account_id__in={account_pk for _, account_pk in wanted}
    ).values_list("user_id", "account_id", "role")
    found = {(user_pk, account_pk): role for user_pk, account_pk, role in rows}
    return {pair: found.get(pair, Membership.Role.NONE) for pair in wanted}


def _role_held(user: User, account: AwsAccount, role: str | None = None) -> str | None:
    """The role this person holds on the account, in words ("no role", "the Observer role"); None for Admin."""
    role = Membership.Role(role if role is not None else role_on(user, account))
    if role == Membership.Role.ADMIN:
        return None
    return "no role" if role == Membership.Role.NONE else f"the {role.label} role"


def request_role_refusal(user: User, account: AwsAccount) -> str | None:
    """Why this person may not ask for access on the account (only Admin may), or None if they may."""
    held = _role_held(user, account)
    if held is None:
        return None
    return f"You have {held} on {account.name} ({account.account_id}); only Admin may request access."


def access_role_refusal(
    user: User, account: AwsAccount, *, third_person: bool = False, role: str | None = None
) -> str | None:
    """Why this person may not (or no longer) reach the account's instances, or None if they may.

    The one answer to "may this person still use access on this account": only Admin may. It is
    asked again at every approval and every use (certificates, passwords, sessions, AWS
    credentials, the terminal, the CLI's proxy), not only when the request was made: an admin
    may lower or remove the role, and an identity provider drops a group at the next sign-in,
    while a request waits or runs. The answer speaks to the person ("You have ..."), or of them
    (``third_person``: "Alice has ...") to an approver or in the Logbook. ``role``: the role the
    person holds there, when the caller has read it already (``roles_on``); None reads it now.
    A deactivated person (``is_active`` cleared, in the admin or anywhere) may use nothing,
    whatever their role: as read on ``user``, so a long-lived caller reloads it first.
    """
    if not user.is_active:
        who = f"{user.label} is" if third_person else "You are"
        return f"{who} deactivated in Passport; a deactivated person may not have access to any instance."
    held = _role_held(user, account, role)
    if held is None:
        return None
    who = f"{user.label} has" if third_person else "You have"
    return (
        f"{who} {held} on {account.name} ({account.account_id}) now; "
        "only an Admin of the account may have access to its instances."
    )


def can_approve_on(user: User, account: AwsAccount) -> bool:
    """A site admin or an approver of the account; never a deactivated person (as ``user`` was read)."""
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user=user, account=account, can_approve=True).exists()


def access_request_visibility(user: User) -> Q:
    """A person sees their own requests and those of accounts they approve for."""
    if user.is_superuser or user.is_auditor:
        return Q()
    return Q(requester=user) | Q(account__in=approvable_accounts(user))


# --- terminal recordings -------------------------------------------------------------
# Who may watch a browser-terminal recording (what was typed and shown on a customer's server):
# - Logbook reviewers (auditors, site admins): every recording, as they read every Logbook entry;
# - the person who ran the terminal: their own sessions;
# - approvers of the account the session was on: they vouched for that access, and already see
#   its request.
# Everyone else (another Admin of the same account, an observer, an outsider) sees nothing: 404.


def recording_visibility(user: Any) -> Q:
    """A filter on ``terminal.TerminalSession`` for the recordings this person may watch."""
    if not user.is_authenticated:
        return Q(pk__in=[])
    if can_review_logbook(user):
        return Q()
    return Q(user=user) | Q(grant__request__account__in=approvable_accounts(user))


def can_view_recording(user: Any, session: Any) -> bool:
    """The same rule as ``recording_visibility``, for one ``terminal.TerminalSession``."""
    if not user.is_authenticated:
        return False
    if can_review_logbook(user) or session.user_id == user.pk:
        return True
    return can_approve_on(user, session.grant.request.account)


# --- one person, several users -------------------------------------------------------
# A person may hold more than one user here: a local break-glass account beside the one their
# identity provider signs in, say, each with the person's email. Where Passport asks for a
# person other than the one who has the access (approving or rejecting a request, counting N
# approvals of M, moderating a session), those users are one person: the same email in its
# canonical form (``User.email_key``: case, compatibility forms and invisible characters folded,
# spaces trimmed, then taken as mail to it is sent, accounts.email_keys; an empty one matches
# nobody). The stored key is what both the Python check and
# the database's filter compare, so they cannot disagree. Their open sessions count together
# against the cap (terminal.slots). Using the access (certificates, terminals) stays with the
# very user who asked.


def person_email(user: Any) -> str:
    """The email a user has, as shown in messages; "" when there is none."""
    return (getattr(user, "email", "") or "").strip()


def _person_key(user: Any) -> str:
    """``User.email_key``: "" for a user without an email, and for anyone who is not a ``User``."""
    return getattr(user, "email_key", "") or ""


def same_person(user: Any, other: Any) -> bool:
    """Whether two users are one person: the same user, or the same (non-empty) email key."""
    if user.pk is not None and user.pk == other.pk:
        return True
    key = _person_key(user)
    return bool(key) and key == _person_key(other)


def same_person_users(user: Any) -> QuerySet[User]:
    """This user and every other user of the same person (``same_person``), for filtering by (``__in``)."""
    key = _person_key(user)
    if not key:
        return User.objects.filter(pk=user.pk)
    return User.objects.filter(Q(pk=user.pk) | Q(email_key=key))


# --- what one person may do to one access request -------------------------------------
# ``approves`` lets a caller that already knows (a list computed in one query) skip the lookup.


def is_requester(user: Any, access_request: Any) -> bool:
    """The very user who asked: the one who uses the access."""
    return bool(user.is_authenticated and access_request.requester_id == user.pk)


def is_requester_in_person(user: Any, access_request: Any) -> bool:
    """The person who asked, under this user or another of theirs (``same_person``): never their own approver."""
    if not user.is_authenticated:
        return False
    if access_request.requester_id == user.pk:
        return True
    # Only a user with an email can be another user's person; the requester is loaded only then.
    return bool(_person_key(user)) and same_person(user, access_request.requester)


def use_access_refusal(user: Any, access_request: Any) -> str | None:
    """Why this person may not use this request's access now, or None if they may.

    Certificates, passwords, sessions, AWS credentials, the terminal, the CLI's proxy: the
    requester's alone, and only while they hold the Admin role on the request's account
    (``access_role_refusal``).
    """
    if not is_requester(user, access_request):
        return "Only the person who asked for this access can use it."
    return access_role_refusal(user, access_request.account)


def can_decide(user: Any, access_request: Any, *, approves: bool | None = None) -> bool:
    """Approve or reject: an approver of the account (or a site admin), never the requester under any of their users."""
    if not user.is_authenticated or is_requester_in_person(user, access_request):
        return False
    return can_approve_on(user, access_request.account) if approves is None else approves


def can_cancel(user: Any, access_request: Any) -> bool:
    """Withdraw a request before provisioning: the requester, or a site admin."""
    return is_requester(user, access_request) or is_site_admin(user)


def can_extend(user: Any, access_request: Any) -> bool:
    return is_requester(user, access_request)


def can_complete(user: Any, access_request: Any, *, approves: bool | None = None) -> bool:
    """End access now: the requester, the account's approvers, site admins."""
    if is_requester(user, access_request) or is_site_admin(user):
        return True
    if not user.is_authenticated:
        return False
    return can_approve_on(user, access_request.account) if approves is None else approves


# A CLI sign-in's bearer token (accounts.authentication) acts for its person's own access only: asking
# for it, connecting, extending and ending it. It lives on a laptop, in a file, for hours; deciding on
# other people's access, or ending it (an approver's or a site admin's completion, a site admin's
# cancellation), takes a browser sign-in and its second factor.
CLI_SIGN_IN_DECIDES_NOTHING = (
    "Approving, rejecting and syncing an inventory are done in the portal, signed in with your browser: "
    "a CLI sign-in (passport auth login) cannot do them."
)
CLI_SIGN_IN_ENDS_OWN_ACCESS_ONLY = (
    "A CLI sign-in (passport auth login) ends only your own access: cancel or complete other people's "
    "requests in the portal, signed in with your browser."
)


# --- live sessions: watch, end, moderate ----------------------------------------------
# Who may watch an open session live and end it: the account's approvers (as the approvals
# queue decides who may decide its requests: ``approvable_accounts``, site admins everywhere)
# and the Logbook's readers (auditors, site admins). Never the person whose session it is, under
# any of their users (``same_person``): a requester is not an approver of their own access, and
# cannot be their own moderator.


def live_session_visibility(user: Any) -> Q:
    """A filter on ``terminal.TerminalSession`` for the sessions this person may watch and end."""
    if not user.is_authenticated:
        return Q(pk__in=[])
    not_own = ~Q(user__in=same_person_users(user))
    if can_review_logbook(user):
        return not_own
    return Q(grant__request__account__in=approvable_accounts(user)) & not_own


def may_watch_sessions_anywhere(user: Any) -> bool:
    """Whether the portal offers "Live now" to this person (the nav)."""
    return can_review_logbook(user) or is_approver_anywhere(user)


def can_watch_session(user: Any, session: Any) -> bool:
    """The same rule as ``live_session_visibility``, for one ``terminal.TerminalSession``."""
    if not user.is_authenticated or _own_session(user, session):
        return False
    return can_review_logbook(user) or can_approve_on(user, session.grant.request.account)


def counts_as_moderator(user: Any, session: Any) -> bool:
    """Whether this watcher lets a moderated session run (``AwsAccount.require_session_join``): an
    approver of its account who is not the person in it. An auditor may watch, but is no moderator."""
    if not user.is_authenticated or _own_session(user, session):
        return False
    return can_approve_on(user, session.grant.request.account)


def _own_session(user: Any, session: Any) -> bool:
    """Whether the session is this person's, under this user or another of theirs (``same_person``)."""
    if session.user_id == user.pk:
        return True
    return bool(_person_key(user)) and same_person(user, session.user)
