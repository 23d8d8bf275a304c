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
from datetime import date

from core.usernames import validate_username
from fleet.ssh_keys import LINUX_KEEP_LINES, UnsafeScriptValue, authorized_keys, grant_key_options, grant_token
from fleet.windows_scripts import (
    WINDOWS_RDP_GROUP,
    WINDOWS_RDP_GROUP_MARKER,
    WINDOWS_REMOVE,
    windows_create_template,
)

MARKER_GROUP = "passport-users"
WINDOWS_MARKER = "Passport short-lived user"
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
# EC2 instances (i-) and hybrid managed nodes (mi-), as Run Command names them.
_INSTANCE_ID_RE = re.compile(r"^m?i-[0-9a-f]{8,17}$")
_PLACEHOLDER_RE = re.compile(r"__[A-Z][A-Z0-9_]*__")


_LINUX_CREATE = (
    r"""#!/bin/bash
# Passport: create short-lived user __USER__ for __FOR_GRANTS__ (idempotent)
set -euo pipefail
user='__USER__'
marker='__MARKER__'
__GRANT_LINES__
# One sudoers file per grant: ending one grant takes away only what that grant gave.
sudoers="/etc/sudoers.d/passport-$user-$grant"
# One Passport script at a time on a host, and never a create after its grant's removal:
# a create that was still queued when the portal gave up on it must not bring the user back.
mkdir -p /var/lib/passport/removed /var/lib/passport/grants /var/lib/passport/keys
exec 9>/var/lib/passport/lock
flock -w 300 9
if [ -e "/var/lib/passport/removed/$grant" ]; then
  echo "refusing: grant $grant was already removed from this host" >&2
  exit 6
fi
"""
    + LINUX_KEEP_LINES
    + r"""
getent group "$marker" >/dev/null || groupadd --system "$marker"
if id "$user" >/dev/null 2>&1; then
  if ! id -nG "$user" | tr ' ' '\n' | grep -qx "$marker"; then
    echo "refusing: $user exists and is not a Passport user" >&2
    exit 3
  fi
else
  useradd --create-home --shell /bin/bash --groups "$marker" --comment '__COMMENT__' "$user"
fi
printf '%s\n' "$user" > "/var/lib/passport/grants/$grant"
# No password login, but not "locked" either: sshd refuses keys for a locked account.
usermod --password '*' --expiredate '__EXPIRY__' "$user"
home=$(getent passwd "$user" | cut -d: -f6)
# This grant's lines, recorded as written: a later script keeps exactly these (keep_grant_lines).
keys=$(__AUTHORIZED_KEYS__)
if [ -n "$keys" ]; then printf '%s\n' "$keys"; fi > "/var/lib/passport/keys/$grant"
# Other live grants keep their lines; this grant's lines are written afresh (CA keys may have rotated).
{ read_user_keys | keep_grant_lines "$grant"; cat -- "/var/lib/passport/keys/$grant"; } | write_user_keys
# The single per-user file of earlier versions: each grant now has its own.
rm -f "/etc/sudoers.d/passport-$user"
if [ '__SUDO__' = yes ]; then
  printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" > "$sudoers.passport"
  chmod 440 "$sudoers.passport"
  if ! visudo -cqf "$sudoers.passport"; then
    rm -f "$sudoers.passport"
    echo "refusing: the sudoers entry for $user does not validate" >&2
    exit 5
  fi
  mv -f "$sudoers.passport" "$sudoers"
else
  rm -f "$sudoers" "$sudoers.passport"
fi
echo "passport: $user ready for grant $grant"
"""
)

_LINUX_REMOVE = (
    r"""#!/bin/bash
# Passport: remove __FOR_GRANTS__ of short-lived user __USER__ (idempotent)
set -euo pipefail
user='__USER__'
marker='__MARKER__'
__GRANT_LINES__
mkdir -p /var/lib/passport/removed /var/lib/passport/grants
exec 9>/var/lib/passport/lock
flock -w 300 9
if [ -n "$grant" ]; then
  touch "/var/lib/passport/removed/$grant"
  find /var/lib/passport/removed -type f -mtime +3 -delete 2>/dev/null || true
fi
"""
    + LINUX_KEEP_LINES
    + r"""
if id "$user" >/dev/null 2>&1; then
  if ! id -nG "$user" | tr ' ' '\n' | grep -qx "$marker"; then
    # Not ours: nothing of Passport's is there to remove, and this account is left alone.
    echo "passport: $user is not a Passport user; left untouched"
    exit 0
  fi
  home=$(getent passwd "$user" | cut -d: -f6)
  if [ -n "$grant" ]; then
    rm -f "/var/lib/passport/grants/$grant" "/var/lib/passport/keys/$grant" "/etc/sudoers.d/passport-$user-$grant"
    # Other live grants of this person on this host keep the user and their own lines;
    # this grant's certificate is refused from now on.
    remaining=$(read_user_keys | keep_grant_lines "$grant")
    if [ -n "$remaining" ]; then
      printf '%s\n' "$remaining" | write_user_keys
      echo "passport: grant $grant removed; $user kept for $(printf '%s\n' "$remaining" | wc -l) line(s) of live grants"
      exit 0
    fi
  fi
  # Lock first, so no new session starts while the old ones are ended.
  usermod --lock --expiredate 1 "$user"
  for _ in $(seq 1 20); do
    pkill -KILL -u "$user" 2>/dev/null || true
    pgrep -u "$user" >/dev/null 2>&1 || break
    sleep 0.25
  done
  userdel --remove "$user" 2>/dev/null || userdel --force --remove "$user" 2>/dev/null || userdel "$user"
  case "$home" in /home/rs-*) rm -rf -- "$home" ;; esac
fi
grant_sudoers="/etc/sudoers.d/passport-$user-????????-????-????-????-????????????"
# shellcheck disable=SC2086 # the glob is meant: every grant's file of this user
rm -f "/etc/sudoers.d/passport-$user" $grant_sudoers
# A home left by an earlier, interrupted removal carries the Passport name pattern.
rm -rf -- "/home/$user"
left=""
id "$user" >/dev/null 2>&1 && left="$left account"
pgrep -u "$user" >/dev/null 2>&1 && left="$left processes"
{ [ -e "/etc/sudoers.d/passport-$user" ] || compgen -G "$grant_sudoers" >/dev/null; } && left="$left sudoers"
[ -e "/home/$user" ] && left="$left home"
if [ -n "$left" ]; then
  echo "passport: $user still has:$left" >&2
  exit 4
fi
echo "passport: $user removed"
"""
)

# The list script's last line, with how many names it listed: a listing Systems Manager cut short has none.
LIST_END = "passport-listed"
_LINUX_LIST = r"""#!/bin/bash
# Passport: list the short-lived users on this host (members of the marker group), then how many
set -euo pipefail
users="$(getent group '__MARKER__' | cut -d: -f4 | tr ',' '\n' | grep -E '^rs-[a-z2-7]{8}(-[a-z2-7]{4})?$' || true)"
[ -z "$users" ] || printf '%s\n' "$users"
echo "__END__ $(printf '%s' "$users" | grep -c '' || true)"
"""


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


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def render_create(
    *,
    platform: str,
    username: str,
    expires_on: date,
    grant_uid: str = "",
    ca_public_keys: Sequence[str] = (),
    forward_ports: Iterable[object] = (),
    forward_destinations: Iterable[object] = (),
    admin_rights: bool = False,
    region: str = "",
    domain_controller: bool = False,
) -> str:
    """The create script; ``admin_rights`` is sudo on Linux, Administrators (Domain Admins on a DC) on Windows.

    On Linux, ``forward_ports`` are the ports on the instance the grant's SSH forwards may reach
    (the account's, ``AwsAccount.forward_ports``; none given, none reached), and
    ``forward_destinations`` the ``host:port`` pairs beyond it they may reach (the request's,
    ``AccessRequest.destinations_in_force``)."""
    username = validate_username(username)
    if platform == "windows":
        if not _REGION_RE.fullmatch(region):
            raise UnsafeScriptValue("a Windows user's password is read from Parameter Store in its region")
        return _fill(
            windows_create_template(domain_controller=domain_controller, admin_rights=admin_rights),
            USER=username,
            COMMENT=WINDOWS_MARKER,
            PARAMETER=password_parameter_name(grant_uid),
            REGION=region,
            EXPIRY=expires_on.isoformat(),
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
        )
    )
    return _fill(
        _LINUX_CREATE,
        FOR_GRANTS=f"grant {grant}",
        GRANT_LINES=f"grant='{grant}'",
        AUTHORIZED_KEYS=f"printf '%s' '{keys}' | base64 -d",
        **_linux_create_values(username=username, expires_on=expires_on, admin_rights=admin_rights),
    )


def _linux_create_values(*, username: str, expires_on: date, admin_rights: bool) -> dict[str, str]:
    return {
        "USER": validate_username(username),
        "MARKER": MARKER_GROUP,
        "COMMENT": WINDOWS_MARKER,
        "EXPIRY": expires_on.isoformat(),
        "SUDO": "yes" if admin_rights else "no",
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
) -> str:
    """Shell that sets ``grant`` (and ``keys_b64`` when ``keys`` are given) to those of the host
    the script runs on, by the instance id the agent puts in AWS_SSM_INSTANCE_ID; any other host
    refuses (exit 8) before it touches anything."""
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
            )
            lines_b64 = _b64(grant_keys)
            line += f"; keys_b64='{lines_b64}'"
        lines.append(line + " ;;")
    lines += [
        '  *) echo "refusing: this command names no grant for host ${AWS_SSM_INSTANCE_ID:-(unknown)}" >&2; exit 8 ;;',
        "esac",
    ]
    return "\n".join(lines)


def render_create_per_host(
    *,
    username: str,
    expires_on: date,
    grants: Mapping[str, str],
    ca_public_keys: Sequence[str],
    forward_ports: Iterable[object] = (),
    forward_destinations: Iterable[object] = (),
    admin_rights: bool = False,
) -> str:
    """One Linux create script for several hosts, one Run Command for all of them: each host
    creates the user for its own grant (``grants``: instance id -> grant uid), as
    ``render_create`` would for that host alone."""
    forward_ports, forward_destinations = tuple(forward_ports), tuple(forward_destinations)  # read once per host
    return _fill(
        _LINUX_CREATE,
        FOR_GRANTS=f"the grant of each of {len(grants)} hosts",
        GRANT_LINES=_grant_per_host(
            grants, keys=ca_public_keys, forward_ports=forward_ports, forward_destinations=forward_destinations
        ),
        AUTHORIZED_KEYS="printf '%s' \"$keys_b64\" | base64 -d",
        **_linux_create_values(username=username, expires_on=expires_on, admin_rights=admin_rights),
    )


def render_remove(*, platform: str, username: str, grant_uid: str = "", domain_controller: bool = False) -> str:
    """The removal script; with ``grant_uid`` it also leaves a tombstone so that grant's create never runs later."""
    username = validate_username(username)
    if platform == "windows":
        return _fill(
            WINDOWS_REMOVE,
            USER=username,
            COMMENT=WINDOWS_MARKER,
            DOMAIN="yes" if domain_controller else "no",
            RDP_GROUP=WINDOWS_RDP_GROUP,
        )
    grant = grant_token(grant_uid) if grant_uid else ""
    return _fill(
        _LINUX_REMOVE, USER=username, MARKER=MARKER_GROUP, FOR_GRANTS=f"grant {grant}", GRANT_LINES=f"grant='{grant}'"
    )


def render_remove_per_host(*, username: str, grants: Mapping[str, str]) -> str:
    """One Linux removal script for several hosts: each removes (and tombstones) its own grant."""
    return _fill(
        _LINUX_REMOVE,
        USER=validate_username(username),
        MARKER=MARKER_GROUP,
        FOR_GRANTS=f"the grant of each of {len(grants)} hosts",
        GRANT_LINES=_grant_per_host(grants),
    )


def render_list_users() -> str:
    return _fill(_LINUX_LIST, MARKER=MARKER_GROUP, END=LIST_END)


__all__ = [
    "HANDOFF_PREFIX",
    "LIST_END",
    "MARKER_GROUP",
    "WINDOWS_MARKER",
    "UnsafeScriptValue",
    "authorized_keys",
    "grant_key_options",
    "password_parameter_name",
    "render_create",
    "render_create_per_host",
    "render_list_users",
    "render_remove",
    "render_remove_per_host",
]
