from collections.abc import Mapping
from datetime import timedelta

from django import template

from accounts.models import AwsAccount
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus, SweepFailure
from requests_app.remote_desktop import RemoteDesktop, remote_desktops
from requests_app.selectors import sweep_failure_get

register = template.Library()


@register.filter
def hours(value: timedelta | None) -> str:
    """A duration the way people say it: "1 h", "2 h 30 min", "45 min"."""
    if value is None:
        return ""
    minutes = int(value.total_seconds() // 60)
    whole_hours, rest = divmod(minutes, 60)
    if not whole_hours:
        return f"{rest} min"
    return f"{whole_hours} h {rest} min" if rest else f"{whole_hours} h"


@register.filter
def status_tone(item: AccessRequest | Grant) -> str:
    """The badge colour of a request's or a grant's status, as its status choice defines it."""
    status = RequestStatus(item.status) if isinstance(item, AccessRequest) else GrantStatus(item.status)
    return status.tone


@register.filter
def admin_rights_meaning(access_request: AccessRequest) -> str:
    """What the request's administrator-rights flag gives on the kinds of instance it names.

    Approvers decide on this, so it is spelled out per platform: on Windows "no" still means
    a Remote Desktop user. The platform, and whether a Windows instance is a domain controller, are
    what the grant recorded when the request was made, the only kind of user provisioning will
    create there, not what the inventory or the instance's tag say now. Reads the grants the page's selector prefetched.
    """
    grants = list(access_request.grants.all())
    windows = [grant for grant in grants if grant.platform == Instance.Platform.WINDOWS]
    admin = access_request.admin_rights
    parts = []
    if any(grant.platform == Instance.Platform.LINUX for grant in grants):
        parts.append("Linux: sudo" if admin else "Linux: no sudo")
    if any(not grant.domain_account for grant in windows):
        parts.append("Windows: Administrators" if admin else "Windows: Remote Desktop Users only")
    if any(grant.domain_account for grant in windows):
        parts.append("domain controller: Domain Admins" if admin else "domain controller: Remote Desktop Users only")
    return "; ".join(parts)


@register.simple_tag
def sweep_problem(kind: str, key: object) -> SweepFailure | None:
    """A periodic task's failure streak on this item (shown where the item is), or None."""
    return sweep_failure_get(kind=kind, key=str(key))


@register.simple_tag
def inventory_problems(problems: Mapping[int, list[SweepFailure]], account: AwsAccount) -> list[SweepFailure]:
    """The account's regions whose inventory sync keeps failing, from those the view read for every
    account at once (``selectors.sweep_failures_by_account``)."""
    return problems.get(account.pk, [])


@register.simple_tag
def remote_desktop_list(access_request: AccessRequest, grants: list[Grant], user: object) -> list[RemoteDesktop]:
    """The requester's ready Windows instances of an active request and how `passport connect` reaches them."""
    return remote_desktops(access_request, grants, user)
