"""Scripts sent through Run Command to create and remove short-lived users.

Only values the portal made itself reach a script, and each is checked against a strict
pattern first: usernames by ``validate_username``, CA public keys by ``_CA_KEY_RE``, and
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
from collections.abc import Sequence
from datetime import date

from requests_app.usernames import validate_username

MARKER_GROUP = "passport-users"
WINDOWS_MARKER = "Passport short-lived user"
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
_GRANT_UID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PLACEHOLDER_RE = re.compile(r"__[A-Z][A-Z0-9_]*__")
_CA_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}$")

_LINUX_CREATE = r"""#!/bin/bash
# Passport: create short-lived user __USER__ (idempotent)
set -euo pipefail
user='__USER__'
marker='__MARKER__'
sudoers="/etc/sudoers.d/passport-$user"
grant='__GRANT__'
# One Passport script at a time on a host, and never a create after its grant's removal:
# a create that was still queued when the portal gave up on it must not bring the user back.
mkdir -p /var/lib/passport/removed
exec 9>/var/lib/passport/lock
flock -w 300 9
if [ -n "$grant" ] && [ -e "/var/lib/passport/removed/$grant" ]; then
  echo "refusing: grant $grant was already removed from this host" >&2
  exit 6
fi
getent group "$marker" >/dev/null || groupadd --system "$marker"
if id "$user" >/dev/null 2>&1; then
  if ! id -nG "$user" | tr ' ' '\n' | grep -qx "$marker"; then
    echo "refusing: $user exists and is not a Passport user" >&2
    exit 3
  fi
else
  useradd --create-home --shell /bin/bash --groups "$marker" --comment '__COMMENT__' "$user"
fi
# No password login, but not "locked" either: sshd refuses keys for a locked account.
usermod --password '*' --expiredate '__EXPIRY__' "$user"
home=$(getent passwd "$user" | cut -d: -f6)
group=$(id -gn "$user")
install -d -m 700 -o "$user" -g "$group" "$home/.ssh"
printf '%s' '__AUTHORIZED_KEYS_B64__' | base64 -d > "$home/.ssh/authorized_keys.passport"
chown "$user:$group" "$home/.ssh/authorized_keys.passport"
chmod 600 "$home/.ssh/authorized_keys.passport"
mv -f "$home/.ssh/authorized_keys.passport" "$home/.ssh/authorized_keys"
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
echo "passport: $user ready"
"""

_LINUX_REMOVE = r"""#!/bin/bash
# Passport: remove short-lived user __USER__ (idempotent)
set -euo pipefail
user='__USER__'
marker='__MARKER__'
sudoers="/etc/sudoers.d/passport-$user"
grant='__GRANT__'
mkdir -p /var/lib/passport/removed
exec 9>/var/lib/passport/lock
flock -w 300 9
if [ -n "$grant" ]; then
  touch "/var/lib/passport/removed/$grant"
  find /var/lib/passport/removed -type f -mtime +3 -delete 2>/dev/null || true
fi
if id "$user" >/dev/null 2>&1; then
  if ! id -nG "$user" | tr ' ' '\n' | grep -qx "$marker"; then
    # Not ours: nothing of Passport's is there to remove, and this account is left alone.
    echo "passport: $user is not a Passport user; left untouched"
    exit 0
  fi
  home=$(getent passwd "$user" | cut -d: -f6)
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
rm -f "$sudoers" "$sudoers.passport"
# A home left by an earlier, interrupted removal carries the Passport name pattern.
rm -rf -- "/home/$user"
left=""
id "$user" >/dev/null 2>&1 && left="$left account"
pgrep -u "$user" >/dev/null 2>&1 && left="$left processes"
[ -e "$sudoers" ] && left="$left sudoers"
[ -e "/home/$user" ] && left="$left home"
if [ -n "$left" ]; then
  echo "passport: $user still has:$left" >&2
  exit 4
fi
echo "passport: $user removed"
"""

_LINUX_LIST = r"""#!/bin/bash
# Passport: list the short-lived users on this host (members of the marker group)
set -euo pipefail
getent group '__MARKER__' | cut -d: -f4 | tr ',' '\n' | grep -E '^rs-[a-z2-7]{8}(-[a-z2-7]{4})?$' || true
"""

_WINDOWS_CREATE = r"""# Passport: create short-lived user __USER__ (idempotent)
$ErrorActionPreference = 'Stop'
$user = '__USER__'
$marker = '__COMMENT__'
# The password is handed over in Parameter Store (SecureString), never in this script.
if (-not (Get-Command Get-SSMParameter -ErrorAction SilentlyContinue)) {
  Write-Error "AWS Tools for PowerShell (Get-SSMParameter) is not installed"; exit 7
}
$password = ConvertTo-SecureString -AsPlainText -Force -String `
  (Get-SSMParameter -Name '__PARAMETER__' -WithDecryption $true -Region '__REGION__').Value
$expires = [datetime]::Parse('__EXPIRY__')
if ('__DOMAIN__' -eq 'yes') {
  Import-Module ActiveDirectory
  $existing = Get-ADUser -Filter "SamAccountName -eq '$user'" -Properties Description
  if ($existing -and $existing.Description -ne $marker) { Write-Error "refusing: $user is not a Passport user"; exit 3 }
  if (-not $existing) {
    New-ADUser -Name $user -SamAccountName $user -Description $marker -AccountPassword $password `
      -Enabled $true -AccountExpirationDate $expires
  } else {
    Set-ADAccountPassword -Identity $user -Reset -NewPassword $password
    Set-ADUser -Identity $user -AccountExpirationDate $expires -Enabled $true
  }
  Add-ADGroupMember -Identity 'Domain Admins' -Members $user
} else {
  $existing = Get-LocalUser -Name $user -ErrorAction SilentlyContinue
  if ($existing -and $existing.Description -ne $marker) { Write-Error "refusing: $user is not a Passport user"; exit 3 }
  if (-not $existing) {
    New-LocalUser -Name $user -Password $password -Description $marker -AccountExpires $expires | Out-Null
  } else {
    Set-LocalUser -Name $user -Password $password -AccountExpires $expires
    Enable-LocalUser -Name $user
  }
  if (-not (Get-LocalGroupMember -Group 'Administrators' -Member $user -ErrorAction SilentlyContinue)) {
    Add-LocalGroupMember -Group 'Administrators' -Member $user
  }
}
Write-Output "passport: $user ready"
"""

_WINDOWS_REMOVE = r"""# Passport: remove short-lived user __USER__ (idempotent)
$ErrorActionPreference = 'Stop'
$user = '__USER__'
$marker = '__COMMENT__'
if ('__DOMAIN__' -eq 'yes') {
  Import-Module ActiveDirectory
  $account = Get-ADUser -Filter "SamAccountName -eq '$user'" -Properties Description
  if ($account -and $account.Description -ne $marker) {
    Write-Output "passport: $user is not a Passport user; left untouched"; exit 0
  }
  if ($account) {
    Disable-ADAccount -Identity $user
    Remove-ADUser -Identity $user -Confirm:$false
  }
} else {
  $account = Get-LocalUser -Name $user -ErrorAction SilentlyContinue
  if ($account -and $account.Description -ne $marker) {
    Write-Output "passport: $user is not a Passport user; left untouched"; exit 0
  }
  if ($account) {
    Disable-LocalUser -Name $user
    Get-CimInstance Win32_Process |
      Where-Object { (Invoke-CimMethod -InputObject $_ -MethodName GetOwner).User -eq $user } |
      ForEach-Object { Stop-Process -Id $_.ProcessId -Force -ErrorAction SilentlyContinue }
    Remove-LocalUser -Name $user
  }
  $profile = Get-CimInstance Win32_UserProfile | Where-Object { $_.LocalPath -like "*\$user" }
  if ($profile) { $profile | Remove-CimInstance }
}
Write-Output "passport: $user removed"
"""


class UnsafeScriptValue(ValueError):
    pass


def _fill(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace(f"__{key}__", value)
    leftover = _PLACEHOLDER_RE.search(template)
    if leftover:
        raise UnsafeScriptValue(f"placeholder {leftover.group(0)} was left unfilled")
    return template


def _grant_token(grant_uid: object) -> str:
    token = str(grant_uid)
    if not _GRANT_UID_RE.fullmatch(token):
        raise UnsafeScriptValue("a grant uid is a UUID")
    return token


HANDOFF_PREFIX = "/passport/handoff/"


def password_parameter_name(grant_uid: object) -> str:
    """The SecureString parameter that hands one grant's Windows password to its instance."""
    return HANDOFF_PREFIX + _grant_token(grant_uid)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def authorized_keys(*, username: str, ca_public_keys: Sequence[str]) -> str:
    """One ``cert-authority`` line per trusted CA, limited to certificates for this username."""
    username = validate_username(username)
    lines = []
    for key in ca_public_keys:
        key = " ".join(key.split()[:2])  # drop the comment: only type and blob are needed
        if not _CA_KEY_RE.fullmatch(key):
            raise UnsafeScriptValue("not an OpenSSH public key")
        lines.append(f'cert-authority,principals="{username}" {key}\n')
    return "".join(lines)


def render_create(
    *,
    platform: str,
    username: str,
    expires_on: date,
    grant_uid: str = "",
    ca_public_keys: Sequence[str] = (),
    sudo: bool = False,
    region: str = "",
    domain_controller: bool = False,
) -> str:
    username = validate_username(username)
    if platform == "windows":
        if not _REGION_RE.fullmatch(region):
            raise UnsafeScriptValue("a Windows user's password is read from Parameter Store in its region")
        return _fill(
            _WINDOWS_CREATE,
            USER=username,
            COMMENT=WINDOWS_MARKER,
            PARAMETER=password_parameter_name(grant_uid),
            REGION=region,
            EXPIRY=expires_on.isoformat(),
            DOMAIN="yes" if domain_controller else "no",
        )
    return _fill(
        _LINUX_CREATE,
        USER=username,
        MARKER=MARKER_GROUP,
        COMMENT=WINDOWS_MARKER,
        EXPIRY=expires_on.isoformat(),
        AUTHORIZED_KEYS_B64=_b64(authorized_keys(username=username, ca_public_keys=ca_public_keys)),
        SUDO="yes" if sudo else "no",
        GRANT=_grant_token(grant_uid) if grant_uid else "",
    )


def render_remove(*, platform: str, username: str, grant_uid: str = "", domain_controller: bool = False) -> str:
    """The removal script; with ``grant_uid`` it also leaves a tombstone so that grant's create never runs later."""
    username = validate_username(username)
    if platform == "windows":
        return _fill(
            _WINDOWS_REMOVE, USER=username, COMMENT=WINDOWS_MARKER, DOMAIN="yes" if domain_controller else "no"
        )
    return _fill(_LINUX_REMOVE, USER=username, MARKER=MARKER_GROUP, GRANT=_grant_token(grant_uid) if grant_uid else "")


def render_list_users() -> str:
    return _fill(_LINUX_LIST, MARKER=MARKER_GROUP)
