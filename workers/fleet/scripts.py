"""Scripts sent through Run Command to create and remove short-lived users.

Only values the portal made itself reach a script, and each is checked against a strict
pattern first (``validate_username``); nothing a person typed is ever interpolated.
Both scripts are idempotent: running one twice leaves the same state as running it once.
"""

from __future__ import annotations

from datetime import date

from requests_app.usernames import validate_username

MARKER_GROUP = "passport-users"

_LINUX_CREATE = r"""#!/bin/bash
# Passport: create short-lived user __USER__ (idempotent)
set -euo pipefail
user='__USER__'
marker='__MARKER__'
getent group "$marker" >/dev/null || groupadd --system "$marker"
if id "$user" >/dev/null 2>&1; then
  if ! id -nG "$user" | tr ' ' '\n' | grep -qx "$marker"; then
    echo "refusing: $user exists and is not a Passport user" >&2
    exit 3
  fi
else
  useradd --create-home --shell /bin/bash --groups "$marker" --comment 'Passport short-lived user' "$user"
fi
usermod --expiredate '__EXPIRY__' "$user"
echo "passport: $user ready"
"""

_LINUX_REMOVE = r"""#!/bin/bash
# Passport: remove short-lived user __USER__ (idempotent)
set -euo pipefail
user='__USER__'
marker='__MARKER__'
if ! id "$user" >/dev/null 2>&1; then
  echo "passport: $user already absent"
  exit 0
fi
if ! id -nG "$user" | tr ' ' '\n' | grep -qx "$marker"; then
  # Not ours: nothing of Passport's is there to remove, and this account is left alone.
  echo "passport: $user is not a Passport user; left untouched"
  exit 0
fi
usermod --lock --expiredate 1 "$user" || true
pkill -KILL -u "$user" || true
userdel --remove "$user" 2>/dev/null || userdel "$user"
if id "$user" >/dev/null 2>&1; then
  echo "passport: $user still present" >&2
  exit 4
fi
echo "passport: $user removed"
"""

_WINDOWS_CREATE = r"""# Passport: create short-lived user __USER__ (idempotent)
$ErrorActionPreference = 'Stop'
$user = '__USER__'
if (-not (Get-LocalUser -Name $user -ErrorAction SilentlyContinue)) {
  New-LocalUser -Name $user -NoPassword -Description 'Passport short-lived user' | Out-Null
}
Add-LocalGroupMember -Group 'Administrators' -Member $user -ErrorAction SilentlyContinue
Write-Output "passport: $user ready"
"""

_WINDOWS_REMOVE = r"""# Passport: remove short-lived user __USER__ (idempotent)
$ErrorActionPreference = 'Stop'
$user = '__USER__'
$account = Get-LocalUser -Name $user -ErrorAction SilentlyContinue
if ($account) {
  if ($account.Description -ne 'Passport short-lived user') {
    Write-Output "passport: $user is not a Passport user; left untouched"; exit 0
  }
  Disable-LocalUser -Name $user
  Get-CimInstance Win32_Process |
    Where-Object { $_.GetOwner().User -eq $user } |
    ForEach-Object { Stop-Process -Id $_.ProcessId -Force }
  Remove-LocalUser -Name $user
}
Write-Output "passport: $user removed"
"""


def _fill(template: str, **values: str) -> str:
    for key, value in values.items():
        template = template.replace(f"__{key}__", value)
    return template


def render_create(*, platform: str, username: str, expires_on: date) -> str:
    username = validate_username(username)
    if platform == "windows":
        return _fill(_WINDOWS_CREATE, USER=username)
    return _fill(_LINUX_CREATE, USER=username, MARKER=MARKER_GROUP, EXPIRY=expires_on.isoformat())


def render_remove(*, platform: str, username: str) -> str:
    username = validate_username(username)
    if platform == "windows":
        return _fill(_WINDOWS_REMOVE, USER=username)
    return _fill(_LINUX_REMOVE, USER=username, MARKER=MARKER_GROUP)
