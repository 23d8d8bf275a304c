"""Scripts sent through Run Command to create and remove short-lived users.

Only values the portal made itself reach a script, and each is checked against a strict
pattern first: usernames by ``validate_username``, CA public keys by ``fleet.ssh_keys``, and
anything longer (the authorized_keys file) travels base64-encoded, so no quote or newline
of it can end up as shell syntax. A Windows password never travels in a script at all: Run
Command keeps its parameters in the command history, so the script reads the password from
a SecureString parameter (``password_parameter_name``) that the portal deletes once the
script has run. Nothing a person typed is ever interpolated. Every script is idempotent:
running it twice leaves the state of running it once.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from core.usernames import validate_username
from fleet.linux_scripts import (
    LINUX_CREATE,
    LINUX_LEFT,
    LINUX_LIST,
    LINUX_REMOVE,
    LIST_END,
)
from fleet.linux_uid import ACCOUNT_UID_LINE, UID_FIRST, UID_LAST, UID_RANGE, account_uid_value, created_account_uid
from fleet.regions import is_region
from fleet.ssh_keys import (
    UnsafeScriptValue,
    authorized_keys,
    grant_key_options,
    grant_token,
    key_expiry_time,
    lines_without_expiry_time,
)
from fleet.windows_removal import REMOVAL_REFUSED_EXIT_CODE, WINDOWS_REMOVE, deleted_computer_accounts
from fleet.windows_scripts import (
    WINDOWS_RDP_GROUP,
    WINDOWS_RDP_GROUP_MARKER,
    WINDOWS_SET_EXPIRY,
    windows_create_template,
)
from fleet.windows_sid import ACCOUNT_SID_LINE, account_sid_value, created_account_sid

MARKER_GROUP = "passport-users"
WINDOWS_MARKER = "Passport short-lived user"
# EC2 instances (i-) and hybrid managed nodes (mi-), as Run Command names them.
_INSTANCE_ID_RE = re.compile(r"^m?i-[0-9a-f]{8,17}$")
_PLACEHOLDER_RE = re.compile(r"__[A-Z][A-Z0-9_]*__")
_WINDOWS_EXPIRY_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{7}Z$")


def _fill(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace(f"__{key}__", value)
    leftover = _PLACEHOLDER_RE.search(template)
    if leftover:
        raise UnsafeScriptValue(f"placeholder {leftover.group(0)} was left unfilled")
    return template


HANDOFF_PREFIX = "/passport/handoff/"


def password_parameter_name(grant_uid: object) -> str:
    """The SecureString parameter that hands one grant's Windows password to its instance."""
    return HANDOFF_PREFIX + grant_token(grant_uid)


def _utc(expires_at: datetime) -> datetime:
    if not isinstance(expires_at, datetime) or expires_at.utcoffset() is None:
        raise UnsafeScriptValue("an account's expiry is a moment with its time zone (the request's end)")
    return expires_at.astimezone(UTC)


def windows_expiry_value(expires_at: datetime) -> str:
    """The moment a Windows account expires, as the scripts hand it to ``[datetime]::ParseExact``:
    .NET's round-trip form ('o') in UTC, e.g. ``2030-03-04T10:00:00.0000000Z``, which reads the
    same in every culture and gives a UTC DateTime (``RoundtripKind``), never a local guess."""
    moment = _utc(expires_at)
    value = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}0Z"
    )
    if not _WINDOWS_EXPIRY_RE.fullmatch(value):
        raise UnsafeScriptValue("a Windows account's expiry is a round-trip UTC time")
    return value


def linux_expiry_date(expires_at: datetime) -> date:
    """The day a Linux account expires on: the day after the request's end, in UTC.

    shadow keeps the expiry as a count of whole days since 1970-01-01 (UTC) and refuses logins
    from the first second of the day it names, so the account outlives the request by up to a
    day; the SSH certificate, valid until the request's end, and the grant's lines' ``expiry-time``
    (``fleet.ssh_keys.key_expiry_time``, moved with the end) are what bound a login more closely.
    """
    return _utc(expires_at).date() + timedelta(days=1)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def render_create(
    *,
    platform: str,
    username: str,
    expires_at: datetime,
    grant_uid: str = "",
    ca_public_keys: Sequence[str] = (),
    forward_ports: Iterable[object] = (),
    forward_destinations: Iterable[object] = (),
    admin_rights: bool = False,
    region: str = "",
    domain_controller: bool = False,
    direct_login: bool = False,
    lines_expire_at: datetime | None = None,
) -> str:
    """The create script; ``admin_rights`` is sudo on Linux, Administrators (Domain Admins on a DC) on Windows.

    ``expires_at`` is the request's end: the Windows account expires then, the Linux one at the
    start of the next day in UTC (``linux_expiry_date``), the most whole days can say. On Linux the
    grant's lines take no certificate from ``lines_expire_at`` on (the grant's own request's end,
    where ``expires_at`` is the latest of the requests sharing the user; ``expires_at`` when not
    given), to the minute (``fleet.ssh_keys.key_expiry_time``).

    On Linux, ``forward_ports`` are the ports on the instance the grant's SSH forwards may reach
    (the account's, ``AwsAccount.forward_ports``; none given, none reached), and
    ``forward_destinations`` the ``host:port`` pairs beyond it they may reach (the request's,
    ``AccessRequest.destinations_in_force``), and ``direct_login`` whether the lines trust the grant's
    direct principal too (a person's own key: ``fleet.ssh_keys.authorized_keys``)."""
    username = validate_username(username)
    if platform == "windows":
        if not is_region(region):
            raise UnsafeScriptValue("a Windows user's password is read from Parameter Store in its region")
        return _fill(
            windows_create_template(domain_controller=domain_controller, admin_rights=admin_rights),
            USER=username,
            COMMENT=WINDOWS_MARKER,
            PARAMETER=password_parameter_name(grant_uid),
            REGION=region,
            EXPIRY=windows_expiry_value(expires_at),
            RDP_GROUP=WINDOWS_RDP_GROUP,
            RDP_GROUP_MARKER=WINDOWS_RDP_GROUP_MARKER,
        )
    grant = grant_token(grant_uid)
    keys = _b64(
        authorized_keys(
            grant_uid=grant,
            ca_public_keys=ca_public_keys,
            forward_ports=forward_ports,
            forward_destinations=forward_destinations,
            direct_login=direct_login,
            expires_at=lines_expire_at or expires_at,
        )
    )
    return _fill(
        LINUX_CREATE,
        FOR_GRANTS=f"grant {grant}",
        GRANT_LINES=f"grant='{grant}'",
        AUTHORIZED_KEYS=f"printf '%s' '{keys}' | base64 -d",
        **_linux_create_values(username=username, expires_at=expires_at, admin_rights=admin_rights),
    )


def _linux_create_values(*, username: str, expires_at: datetime, admin_rights: bool) -> dict[str, str]:
    return {
        "USER": validate_username(username),
        "MARKER": MARKER_GROUP,
        "COMMENT": WINDOWS_MARKER,
        "EXPIRY": linux_expiry_date(expires_at).isoformat(),
        "SUDO": "yes" if admin_rights else "no",
        "UID_LINE": ACCOUNT_UID_LINE,
        **UID_RANGE,
    }


def _instance_token(instance_id: object) -> str:
    token = str(instance_id)
    if not _INSTANCE_ID_RE.fullmatch(token):
        raise UnsafeScriptValue("an instance id is i- or mi- and hexadecimal digits")
    return token


def _grant_per_host(
    grants: Mapping[str, str],
    *,
    keys: Sequence[str] | None = None,
    forward_ports: Iterable[object] = (),
    forward_destinations: Iterable[object] = (),
    lines_expire_at: datetime | None = None,
    created: frozenset[str] | None = None,
    account_uids: Mapping[str, int] | None = None,
    live: Mapping[str, Iterable[str]] | None = None,
    direct_login: bool = False,
) -> str:
    """Shell that sets ``grant`` (and ``keys_b64`` when ``keys`` are given, ``made_by_grant`` when
    ``created`` is: the hosts where the grant made its user; ``account_uid`` and the portal's live
    grants when ``account_uids`` and ``live`` are, a removal's: ``render_remove``) to those of the
    host the script runs on, by the instance id the agent puts in AWS_SSM_INSTANCE_ID; any other
    host refuses (``finish 8``) before it touches anything."""
    if not grants:
        raise UnsafeScriptValue("a script for several hosts names at least one")
    lines = ['case "${AWS_SSM_INSTANCE_ID:-}" in']
    for instance_id, grant_uid in grants.items():
        grant = grant_token(grant_uid)
        line = f"  '{_instance_token(instance_id)}') grant='{grant}'"
        if keys is not None:
            grant_keys = authorized_keys(
                grant_uid=grant,
                ca_public_keys=keys,
                forward_ports=forward_ports,
                forward_destinations=forward_destinations,
                direct_login=direct_login,
                expires_at=lines_expire_at,
            )
            lines_b64 = _b64(grant_keys)
            line += f"; keys_b64='{lines_b64}'"
        if created is not None:
            line += f"; made_by_grant='{'yes' if instance_id in created else 'no'}'"
        if account_uids is not None:
            line += f"; account_uid='{account_uid_value(account_uids.get(instance_id))}'"
        if live is not None:
            line += f"; {_live_grants_lines(live.get(instance_id, ()))}"
        lines.append(line + " ;;")
    lines += [
        '  *) echo "refusing: this command names no grant for host ${AWS_SSM_INSTANCE_ID:-(unknown)}" >&2; finish 8 ;;',
        "esac",
    ]
    return "\n".join(lines)


def render_create_per_host(
    *,
    username: str,
    expires_at: datetime,
    grants: Mapping[str, str],
    ca_public_keys: Sequence[str],
    forward_ports: Iterable[object] = (),
    forward_destinations: Iterable[object] = (),
    admin_rights: bool = False,
    direct_login: bool = False,
    lines_expire_at: datetime | None = None,
) -> str:
    """One Linux create script for several hosts, one Run Command for all of them: each host
    creates the user for its own grant (``grants``: instance id -> grant uid), as
    ``render_create`` would for that host alone."""
    forward_ports, forward_destinations = tuple(forward_ports), tuple(forward_destinations)  # read once per host
    return _fill(
        LINUX_CREATE,
        FOR_GRANTS=f"the grant of each of {len(grants)} hosts",
        GRANT_LINES=_grant_per_host(
            grants,
            keys=ca_public_keys,
            forward_ports=forward_ports,
            forward_destinations=forward_destinations,
            direct_login=direct_login,
            lines_expire_at=lines_expire_at or expires_at,
        ),
        AUTHORIZED_KEYS="printf '%s' \"$keys_b64\" | base64 -d",
        **_linux_create_values(username=username, expires_at=expires_at, admin_rights=admin_rights),
    )


def _live_grants_lines(grant_uids: Iterable[str]) -> str:
    """Shell that tells a Linux removal which of the person's grants on its host the portal holds
    live (``LINUX_GRANT_RECORDS``' ``live_grants``): only those keep the user."""
    return f"live_known=yes; portal_live='{' '.join(sorted({grant_token(uid) for uid in grant_uids}))}'"


def render_remove(
    *,
    platform: str,
    username: str,
    grant_uid: str = "",
    domain_controller: bool = False,
    created: bool = False,
    account_sid: str = "",
    account_uid: int | None = None,
    live_grant_uids: Iterable[str] = (),
) -> str:
    """The removal script; with ``grant_uid`` it also leaves a tombstone so that grant's create never runs later.
    ``created`` says the grant made the account of this name there (it was ready once): one found
    without Passport's marker (a Windows description, a Linux group) is then disabled or locked, its
    processes and sessions ended, and left for an operator (``REMOVAL_REFUSED_EXIT_CODE``). On Windows,
    ``account_sid`` is the SID its create reported ('' when none was), by which the account is found
    whatever its name is now (``fleet.windows_sid``); on Linux, ``account_uid`` the uid its create
    reported (None when none was, ``fleet.linux_uid``), an account of it under another name being
    left so too. ``live_grant_uids``: the person's other grants on the Linux host the portal holds
    live; only those keep the user, whatever records the host holds."""
    username = validate_username(username)
    if platform == "windows":
        return _fill(
            WINDOWS_REMOVE,
            USER=username,
            COMMENT=WINDOWS_MARKER,
            DOMAIN="yes" if domain_controller else "no",
            RDP_GROUP=WINDOWS_RDP_GROUP,
            CREATED="yes" if created else "no",
            SID=account_sid_value(account_sid),
        )
    grant = grant_token(grant_uid) if grant_uid else ""
    return _fill(
        LINUX_REMOVE,
        USER=username,
        MARKER=MARKER_GROUP,
        FOR_GRANTS=f"grant {grant}",
        GRANT_LINES=(
            f"grant='{grant}'; made_by_grant='{'yes' if created and grant else 'no'}'; "
            f"account_uid='{account_uid_value(account_uid)}'; {_live_grants_lines(live_grant_uids)}"
        ),
        REFUSED=str(REMOVAL_REFUSED_EXIT_CODE),
        **UID_RANGE,
    )


def linux_left_line(username: str) -> str:
    """The line a Linux removal writes, with its ``REMOVAL_REFUSED_EXIT_CODE``, when it left the
    grant's user (out of Passport's group) locked for an operator: ``LINUX_LEFT`` for that user."""
    return LINUX_LEFT.replace("$grant_user", validate_username(username)).replace("$marker", MARKER_GROUP)


def render_windows_expiry(
    *, username: str, expires_at: datetime, domain_controller: bool = False, account_sid: str = ""
) -> str:
    """The Windows script that moves the account's expiry to ``expires_at`` (an extension), and does nothing else.
    ``account_sid`` is the SID its create reported ('' for a grant made ready before creates reported
    one), by which the account is found, as the removal finds it; renamed, or without Passport's
    marker, the account is refused."""
    return _fill(
        WINDOWS_SET_EXPIRY,
        USER=validate_username(username),
        COMMENT=WINDOWS_MARKER,
        EXPIRY=windows_expiry_value(expires_at),
        DOMAIN="yes" if domain_controller else "no",
        SID=account_sid_value(account_sid),
    )


def render_remove_per_host(
    *,
    username: str,
    grants: Mapping[str, str],
    created: Iterable[str] = (),
    account_uids: Mapping[str, int] | None = None,
    live: Mapping[str, Iterable[str]] | None = None,
) -> str:
    """One Linux removal script for several hosts: each removes (and tombstones) its own grant.
    ``created``: the instance ids where the grant made the user; ``account_uids``: instance id ->
    the uid its create reported; ``live``: instance id -> the person's other grants there the
    portal holds live (``render_remove``'s ``created``, ``account_uid``, ``live_grant_uids``)."""
    return _fill(
        LINUX_REMOVE,
        USER=validate_username(username),
        MARKER=MARKER_GROUP,
        FOR_GRANTS=f"the grant of each of {len(grants)} hosts",
        GRANT_LINES=_grant_per_host(
            grants, created=frozenset(created), account_uids=account_uids or {}, live=live or {}
        ),
        REFUSED=str(REMOVAL_REFUSED_EXIT_CODE),
        **UID_RANGE,
    )


def render_list_users() -> str:
    return _fill(LINUX_LIST, MARKER=MARKER_GROUP, END=LIST_END, **UID_RANGE)


__all__ = [
    "ACCOUNT_SID_LINE",
    "HANDOFF_PREFIX",
    "LIST_END",
    "MARKER_GROUP",
    "REMOVAL_REFUSED_EXIT_CODE",
    "UID_FIRST",
    "UID_LAST",
    "WINDOWS_MARKER",
    "UnsafeScriptValue",
    "authorized_keys",
    "created_account_sid",
    "created_account_uid",
    "deleted_computer_accounts",
    "grant_key_options",
    "key_expiry_time",
    "lines_without_expiry_time",
    "linux_expiry_date",
    "linux_left_line",
    "password_parameter_name",
    "render_create",
    "render_create_per_host",
    "render_list_users",
    "render_remove",
    "render_remove_per_host",
    "render_windows_expiry",
    "windows_expiry_value",
]
