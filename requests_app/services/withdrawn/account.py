"""Ending the sessions an account no longer allows once an admin changed it (a port or a region
taken off, its CLI sessions recorded, its sessions moderated): ``sessions_end_withdrawn``."""

from __future__ import annotations

from django.db.models import Q

from accounts.models import AwsAccount
from requests_app.models import AccessRequest, Grant, RequestStatus
from requests_app.services.credentials import (
    MODERATION_ON,
    NOW_RECORDED,
    PORT_WITHDRAWN,
    REGION_TAKEN_OFF,
    SSH_PORT,
    is_moderated,
)
from requests_app.services.withdrawn.common import (
    WithdrawnSessions,
    _credential_grants,
    _end,
    _Listings,
    _Owned,
    _Started,
    _started_not_ended,
    _started_with_credentials,
)
from ssmchannel.documents import SSH_DOCUMENT


def _no_longer_allowed(account: AwsAccount, off_region: list[str]) -> Q:
    """The ``session.started`` entries (of the CLI's own data channel) the account no longer allows:
    to a port it no longer opens, on one of ``off_region`` (instance ids in a region it no longer
    lists), and SSH on an account whose CLI sessions are now recorded; every one on a moderated
    account, where no approver could watch them."""
    if is_moderated(account):
        return Q()
    condition = ~Q(detail__port__in=list(account.forward_ports))
    if off_region:
        # One instance's entry, as the Logbook stores its instance ids: space-delimited.
        condition |= Q(instance_ids__in=[f" {instance_id} " for instance_id in off_region])
    if account.cli_sessions == AwsAccount.CliSessions.RECORD:
        condition |= Q(detail__port=SSH_PORT) | Q(detail__document=SSH_DOCUMENT)
    return condition


def _why_ended(account: AwsAccount, grant: Grant, item: _Started) -> dict[str, object]:
    """The reason ``session.terminated`` gives for ending this session (its instance's region first,
    then its port, then the account's moderation)."""
    if grant.instance.region not in account.managed_regions:
        return {"reason": REGION_TAKEN_OFF, "region": grant.instance.region}
    allowed = account.forward_ports
    if item.port not in allowed:
        return {"reason": PORT_WITHDRAWN, "allowed": list(allowed)}
    if is_moderated(account):
        return {"reason": MODERATION_ON}
    return {"reason": NOW_RECORDED}


def _started_no_longer_allowed(account: AwsAccount) -> dict[tuple[int, str], list[_Started]]:
    """The sessions started for the account's active requests that it no longer allows
    (``_no_longer_allowed``) and not ended on record, by (request id, instance id). Four queries,
    two on the Logbook's request index."""
    active = list(
        AccessRequest.objects.filter(account_id=account.pk, status=RequestStatus.ACTIVE).values_list("pk", flat=True)
    )
    if not active:
        return {}
    off_region = sorted(
        set(
            Grant.objects.filter(request_id__in=active)
            .exclude(instance__region__in=list(account.managed_regions))
            .values_list("instance__instance_id", flat=True)
        )
    )
    found: dict[tuple[int, str], list[_Started]] = {}
    for request_id, instance_id, _actor_id, item in _started_not_ended(active, _no_longer_allowed(account, off_region)):
        found.setdefault((request_id, instance_id), []).append(item)
    return found


def _credentials_no_longer_allowed(account: AwsAccount, listings: _Listings) -> list[tuple[Grant, _Owned]]:
    """The sessions started with AWS credentials of the account's active requests that it no longer
    allows: every one once its CLI sessions are recorded (their port cannot be told) or its sessions
    moderated, those on an instance in a region it no longer lists. AWS is asked only when there may
    be some."""
    grants = _credential_grants(Q(request__account_id=account.pk))
    if account.cli_sessions != AwsAccount.CliSessions.RECORD and not is_moderated(account):
        grants = [grant for grant in grants if grant.instance.region not in account.managed_regions]
    return _started_with_credentials(grants, listings)


def _why_owned(account: AwsAccount, grant: Grant) -> dict[str, object]:
    """The reason ``session.terminated`` gives for ending a session started with AWS credentials."""
    if grant.instance.region not in account.managed_regions:
        return {"reason": REGION_TAKEN_OFF, "region": grant.instance.region}
    if is_moderated(account):
        return {"reason": MODERATION_ON}
    return {"reason": NOW_RECORDED}


def sessions_end_withdrawn(*, account_id: int) -> WithdrawnSessions:
    """End every session the portal started for the CLI's own data channel, for an active request of
    this account, that the account no longer allows: to a port it no longer opens, on an instance in a
    region it no longer lists, SSH once its CLI sessions are recorded, or any once its sessions are
    moderated; and every session started with such a request's AWS credentials on a recorded or
    moderated account or in a region it no longer lists.
    Run after an admin's change commits and periodically; a second run finds nothing left to end."""
    result = WithdrawnSessions()
    account = AwsAccount.objects.filter(pk=account_id).first()
    if account is None:
        return result
    found = _started_no_longer_allowed(account)
    listings = _Listings()
    if found:
        grants = Grant.objects.select_related("instance", "request__account").filter(
            request_id__in={request_id for request_id, _ in found}
        )
        by_key = {(grant.request_id, grant.instance.instance_id): grant for grant in grants}
        for key, items in sorted(found.items()):
            grant = by_key.get(key)
            if grant is None:
                continue
            open_now = listings.open_ids(grant)
            for item in items:
                if open_now is not None and item.session_id not in open_now:
                    continue  # over already: nothing to end, nothing to write down
                why = _why_ended(account, grant, item)
                _end(listings.fleet(account), grant, {**item.detail(), **why}, result)
    for grant, owned in _credentials_no_longer_allowed(account, listings):
        _end(listings.fleet(account), grant, {**owned.detail(), **_why_owned(account, grant)}, result)
    return result
