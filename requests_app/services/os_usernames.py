"""Each person's OS username: derived once, stored, theirs alone (``requests_app.models.OsUsername``).

The name is ``rs-<masked-id>`` (``core.usernames``), a 40-bit keyed hash of the person's id: two
people's can collide (~N^2/2^41 for N people). Two people with one name would share one user on a
host: the second's certificate logs in as the first's uid, their sudo entries change each other's,
and on Windows the second's create resets the first's password and its removal deletes their user.
So the name is stored once, unique, the first time the person asks for access; when the derived
name is already another person's (stored, or on another person's grant from before names were
stored) the derivation runs again with a counter. A person keeps the name they were given.

As a second line, a grant is refused (at the request, and again before anything is sent to the
host) when another person's grant on that instance, still there or on its way, has its username.
A Windows removal is refused while another person's grant there has it, but not for one that never
made its user (``never_created``): two such removals would otherwise each wait for the other.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from accounts.models import User
from audit.services import logbook_append
from core.usernames import base_of, username_for
from fleet import FleetError
from requests_app.models import (
    GRANT_STATES_NEEDING_CLEANUP,
    TERMINAL_REQUEST_STATUSES,
    Grant,
    GrantStatus,
    Instance,
    OsUsername,
)
from requests_app.services.grant_log import grant_logbook_append

# Far more than ever needed: the chance that the first k derivations of one id are all taken is
# ~(N/2^40)^k for N people.
MAX_ATTEMPTS = 16

SHARED_NAME_REFUSAL = (
    "Your OS username {name} is also another person's (it was given to both before names were stored). "
    "Ask again once your current access under it has ended and its users are removed: you will then be "
    "given a name of your own."
)
CLASH_REFUSAL = (
    "The OS username {name} on {label} belongs to another person's access (request #{request}); "
    "Passport never gives one user to two people. Ask an administrator to look into it."
)


def on_hosts() -> Q:
    """Grants whose user is on its host or on its way there: a live request's, or one still to remove."""
    return ~Q(request__status__in=TERMINAL_REQUEST_STATUSES) | Q(status__in=GRANT_STATES_NEEDING_CLEANUP)


def never_created() -> Q:
    """Grants that failed, or are being removed, without their create ever having made their user
    (never ready: ``ready_at`` is set, as the SID or uid is, only by a create that did): they never
    will, and nobody has access through them. A create refused before anything was sent (the name
    another person's there) is one; one whose script failed part way may have left a user of its
    name, which is its own removal's to delete (by name, with Passport's marker) and nobody's access."""
    return Q(status__in=[GrantStatus.FAILED, GrantStatus.REMOVING], ready_at__isnull=True)


def _named(name: str, prefix: str = "") -> Q:
    """Grants (through ``prefix``) whose username is ``name``, or ``name`` with a domain controller's suffix."""
    return Q(**{f"{prefix}username": name}) | Q(**{f"{prefix}username__startswith": f"{name}-"})


def os_username_assign(user: User) -> tuple[str, str | None]:
    """The person's OS username (``rs-<masked-id>``), stored the first time; and why they may not have
    new grants under it (None when they may)."""
    stored = OsUsername.objects.filter(user_id=user.pk).first()
    if stored is None:
        return _assign(user, shared=None), None
    if stored.shares_with_id is None:
        return stored.name, None
    # A grant of theirs that never made its user keeps nothing of theirs under the name: one refused
    # at create for this very name (another person's there) would otherwise refuse them for good.
    mine = Grant.objects.filter(on_hosts(), _named(stored.name), request__requester_id=user.pk)
    if mine.exclude(never_created()).exists():
        return stored.name, SHARED_NAME_REFUSAL.format(name=stored.name)
    # Nothing of theirs is left under the shared name: a name of their own from now on.
    OsUsername.objects.filter(pk=stored.pk, shares_with__isnull=False).delete()
    return _assign(user, shared=stored.name), None


def _assign(user: User, *, shared: str | None) -> str:
    """Store the first of the person's derived names that nobody else has (stored, or on a grant)."""
    for attempt in range(MAX_ATTEMPTS):
        name = username_for(user_id=user.pk, domain_controller=False, attempt=attempt)
        if Grant.objects.filter(_named(name)).exclude(request__requester_id=user.pk).exists():
            continue  # another person's user from before names were stored
        try:
            with transaction.atomic():
                OsUsername.objects.create(user_id=user.pk, name=name, attempt=attempt)
        except IntegrityError:
            mine = OsUsername.objects.filter(user_id=user.pk, shares_with__isnull=True).first()
            if mine is not None:
                return mine.name  # stored meanwhile by another request of the person
            continue  # another person's
        if attempt or shared:
            # The name first derived (or the one shared before) was another person's.
            detail: dict[str, object] = {"username": name, "attempt": attempt}
            detail["derived"] = username_for(user_id=user.pk, domain_controller=False)
            if shared:
                detail["shared_before"] = shared
            logbook_append(action="os_username.assigned", actor=user, detail=detail)
        return name
    raise RuntimeError(f"no free OS username for user {user.pk} in {MAX_ATTEMPTS} derivations")


def username_clashes(requester: User, name: str, instances: Iterable[Instance]) -> list[str]:
    """Why another person's grants on ``instances`` under ``name`` keep these off them: one message each."""
    return [
        CLASH_REFUSAL.format(name=name, label=grant.instance.label, request=grant.request_id)
        for grant in _others_on_hosts(requester.pk, _named(name), Q(instance__in=list(instances)))
    ]


def _others_on_hosts(requester_id: int, *filters: Q) -> QuerySet[Grant]:
    return (
        Grant.objects.filter(on_hosts(), *filters)
        .exclude(request__requester_id=requester_id)
        .select_related("instance")
        .order_by("request_id", "pk")
    )


def grant_username_refusal(grant: Grant) -> FleetError | None:
    """Refuse, for good, a grant whose user on its instance is another person's grant's too (still
    there or on its way): nothing is sent. The refusal, after its Logbook entry; None when the name is
    the person's alone there."""
    others = _others_on_hosts(
        grant.request.requester_id, _named(base_of(grant.username)), Q(instance_id=grant.instance_id)
    )
    return _refusal(grant, list(others), step="create", error=CLASH_REFUSAL)


REMOVAL_LEFT = (
    "The Windows user {name} on {label} is another person's access's too (request #{request}), from before "
    "each person's name was stored: removing it would delete their user. It was left for an operator."
)


def grant_removal_refusal(grant: Grant) -> FleetError | None:
    """Refuse, for good, the removal of a Windows grant whose user on its instance is another person's
    grant's too: it would delete their user (one name, one account). Left for an operator (the removal
    is flagged, retried); a Linux removal takes only the grant's own lines and keeps a user other live
    grants hold (``selectors.grants_keeping_the_user``). None when the removal may run."""
    if grant.platform != Instance.Platform.WINDOWS:
        return None
    others = _others_on_hosts(grant.request.requester_id, Q(username=grant.username), Q(instance_id=grant.instance_id))
    # Another person's grant that never made the user is not theirs to lose: counting it would refuse
    # this removal while that grant's own removal is refused for this one (neither ever runs).
    return _refusal(grant, list(others.exclude(never_created())), step="remove", error=REMOVAL_LEFT)


def _refusal(grant: Grant, others: list[Grant], *, step: str, error: str) -> FleetError | None:
    if not others:
        return None
    grant_logbook_append(
        grant,
        "grant.username_taken",
        {"username": grant.username, "step": step, "other_requests": sorted({other.request_id for other in others})},
    )
    message = error.format(name=grant.username, label=grant.instance.label, request=others[0].request_id)
    return FleetError(message, retryable=False)
