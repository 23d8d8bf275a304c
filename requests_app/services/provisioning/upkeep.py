"""Upkeep of grants: work whose task was lost, and hosts whose trusted CA keys changed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import AwsAccount
from fleet import FleetError
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.services.grant_log import grant_logbook_append
from requests_app.services.provisioning.common import (
    PROVISION_RETRY_CAP,
    PROVISIONABLE_REQUESTS,
    Outcome,
    _backoff,
    _create_script,
    _run_on,
    account_expiry_for,
)
from requests_app.services.provisioning.expiry import (
    expiry_refusal_clear,
    host_expiry_record,
    key_expiry_for,
    key_expiry_said,
)
from requests_app.services.provisioning.host_lines import (
    _ca_keys_written,
    _direct_login_written,
    ca_fingerprints_now,
    ca_keys_for,
    direct_login_allowed,
)


@dataclass(frozen=True)
class StuckWork:
    approved_requests: list[int]
    to_provision: list[int]
    to_remove: list[int]


def stuck_work() -> StuckWork:
    """Work whose task was lost (broker restart, killed worker): found and handed out again."""
    now = timezone.now()
    before = now - timedelta(seconds=settings.PASSPORT_SWEEP_GRACE_SECONDS)
    approved = list(
        AccessRequest.objects.filter(status=RequestStatus.APPROVED, decided_at__lt=before).values_list("pk", flat=True)
    )
    to_provision = list(
        Grant.objects.filter(request__status__in=PROVISIONABLE_REQUESTS)
        .filter(
            Q(status=GrantStatus.PENDING, next_attempt_at__lt=before)
            | Q(status=GrantStatus.PENDING, next_attempt_at__isnull=True, updated_at__lt=before)
            | Q(status=GrantStatus.PROVISIONING, lease_until__lt=now)
        )
        .values_list("pk", flat=True)[:500]
    )
    to_remove = list(
        Grant.objects.filter(status=GrantStatus.REMOVING)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(next_attempt_at__isnull=True, updated_at__lt=before) | Q(next_attempt_at__lt=before))
        .values_list("pk", flat=True)[:500]
    )
    return StuckWork(approved_requests=approved, to_provision=to_provision, to_remove=to_remove)


# The grants whose account allows a person's own key to log in to sshd, as ``direct_login_allowed`` reads one.
DIRECT_LOGIN_ALLOWED = Q(
    request__account__cli_sessions=AwsAccount.CliSessions.DIRECT, request__account__require_session_join=False
)

# The grant's error while its host may still let a person's key log in past the recording proxy.
DIRECT_LOGIN_LEFT = (
    "This host's lines still trust the person's own certificates (a direct login) and could not be "
    "rewritten for the account's recorded or moderated sessions; tried again every few minutes: "
)


def grants_needing_key_refresh(*, unbound_only: bool = False) -> list[int]:
    """Ready Linux grants whose hosts get their authorized_keys line again (CA rotation).

    With ``unbound_only``: only those whose host's lines are not what provisioning writes now:
    the per-person line of earlier versions, lines written before forwards were limited, lines
    whose forwards are not the account's ports or destinations any more (an admin changed
    them: a destination taken off the account leaves the lines of requests that had it), or lines
    not known to trust the CA's keys of now (a rotation or retirement while a script was on its
    way, or a refresh after one that failed until its task gave up), or lines that trust the
    grant's direct principal (a person's own key) on an account that no longer allows direct logins
    (made recorded or moderated), or the other way round, or not known to.
    """
    grants = Grant.objects.filter(
        status=GrantStatus.READY,
        request__status=RequestStatus.ACTIVE,
        platform=Instance.Platform.LINUX,  # the user made was a Linux user, whatever the inventory says now
    )
    if unbound_only:
        grants = grants.filter(
            Q(keys_bound=False)
            | Q(key_forward_ports__isnull=True)
            | ~Q(key_forward_ports=F("request__account__extra_forward_ports"))
            | ~Q(key_forward_destinations=F("request__account__forward_destinations"))
            | Q(key_ca_fingerprints__isnull=True)
            | ~Q(key_ca_fingerprints=ca_fingerprints_now())
            | Q(key_direct_login__isnull=True)
            | Q(key_direct_login=True) & ~DIRECT_LOGIN_ALLOWED
            | Q(key_direct_login=False) & DIRECT_LOGIN_ALLOWED
        )
    return list(grants.values_list("pk", flat=True))


def grant_refresh_authorized_keys(*, grant_id: int) -> Outcome:
    """Run the (idempotent) create script again so the host lists the CA keys trusted now, and
    trusts the grant's direct principal only if the account allows direct logins now.

    Where the lines should stop trusting the direct principal and the host could not be reached,
    the grant's error says the host may still let a person's certificate in past the proxy (until a
    later refresh succeeds, which clears it), and the Logbook's entry says which way the lines were
    to go (``direct_login``)."""
    grant = Grant.objects.select_related("request__account", "instance").filter(pk=grant_id).first()
    if grant is None or grant.status != GrantStatus.READY or grant.platform != Instance.Platform.LINUX:
        return Outcome()
    expires_at, lines_expire_at = account_expiry_for(grant), key_expiry_for(grant)
    ca_public_keys = ca_keys_for(grant)
    direct_login = direct_login_allowed(grant.request.account)
    lines_written: bool | None = None
    said: dict[str, object] = {}
    try:
        script = _create_script(grant, expires_at, ca_public_keys=ca_public_keys, lines_expire_at=lines_expire_at)
        result = _run_on(grant, script=script, purpose="refresh CA keys for")
        error = None if result.ok else result.summary()
        if result.ok:
            lines_written, said = key_expiry_said(grant, result.stdout)
    except FleetError as exc:
        error = str(exc)
    if error is None:
        # The ports the lines were written with: an admin's change since then is found again.
        Grant.objects.filter(pk=grant.pk).update(
            keys_bound=True,
            key_forward_ports=grant.request.account.extra_forward_ports,
            key_forward_destinations=grant.request.account.forward_destinations,
        )
        # The ends it was rendered with, unless another script (the move of a shortening made while
        # this one was on its way) recorded meanwhile: then not known, and moved again.
        host_expiry_record(grant, expires_at=expires_at, lines_expire_at=lines_expire_at, lines_written=lines_written)
        Grant.objects.filter(pk=grant.pk, last_error__startswith=DIRECT_LOGIN_LEFT).update(last_error="")
        expiry_refusal_clear(grant.pk)  # the create script moved the account's expiry too
        _ca_keys_written(grant, ca_public_keys)
        _direct_login_written(grant, direct_login)
    elif not direct_login and grant.key_direct_login is not False:
        Grant.objects.filter(pk=grant.pk).update(last_error=(DIRECT_LOGIN_LEFT + error)[:2000])
    grant_logbook_append(
        grant,
        "grant.keys_refreshed" if error is None else "grant.keys_refresh_failed",
        {"username": grant.username, "direct_login": direct_login, **({"error": error} if error else said)},
    )
    return Outcome(retry_in=_backoff(1, PROVISION_RETRY_CAP)) if error else Outcome()
