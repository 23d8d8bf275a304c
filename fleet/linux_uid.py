"""A Linux grant's account told by its uid, which no rename changes.

A user with sudo may rename its own account (``usermod -l``), and a removal that looked for the
grant's name alone would then find nothing and call the grant removed while the account lived on.
So the create script reports the account's uid (``ACCOUNT_UID_LINE``), the portal keeps it on the
grant (``Grant.account_uid``), and the removal finds the account by it (``LINUX_RENAMED``),
as a Windows grant's is found by its SID (``windows_sid``). The uid comes from the host's output:
only one of Passport's own range (``UID_FIRST`` to ``UID_LAST``, each given once on a host) is kept,
and checked again before it is put in a removal script; never root's, nor any other account's.
"""

from __future__ import annotations

import re

from fleet.ssh_keys import UnsafeScriptValue

# Passport's Linux users take their uids (and their groups' gids) from this range, each once per
# host (the counter in /var/lib/passport/next-uid): above the ranges useradd, subordinate ids
# and systemd's containers take (login.defs' UID_MAX 60000, SUB_UID_MAX 600100000, systemd's
# 524288-1879048191), below 2^31.
UID_FIRST = 1_900_000_000
UID_LAST = 1_999_999_999
UID_RANGE = {"UID_FIRST": str(UID_FIRST), "UID_LAST": str(UID_LAST)}

# The line of a create script's output that names the account's uid.
ACCOUNT_UID_LINE = "passport: account uid: "

# ASCII digits, no sign, no leading zero.
_UID_RE = re.compile(r"[1-9][0-9]{0,9}")


def valid_account_uid(value: object) -> bool:
    """Whether ``value`` is a uid Passport gives its Linux users (an int of its range, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and UID_FIRST <= value <= UID_LAST


def account_uid_value(value: int | None) -> str:
    """``value`` for a removal script: the account's uid, or '' (none known); anything else raises."""
    if value is None:
        return ""
    if not valid_account_uid(value):
        raise UnsafeScriptValue(f"a Passport user's uid is a whole number from {UID_FIRST} to {UID_LAST}")
    return str(value)


def created_account_uid(output: str) -> int | None:
    """The uid a Linux create script's output names (``ACCOUNT_UID_LINE``), or None: when no line
    names one, when one names anything but a uid of Passport's range (``valid_account_uid``), or
    when lines name different ones."""
    found: set[int] = set()
    for line in output.split("\n"):
        if line.startswith(ACCOUNT_UID_LINE):
            text = line[len(ACCOUNT_UID_LINE) :]
            if not _UID_RE.fullmatch(text) or not valid_account_uid(uid := int(text)):
                return None
            found.add(uid)
    return found.pop() if len(found) == 1 else None


# Part of ``linux_scripts.LINUX_REMOVE``, after ``LINUX_CLEAN_UID`` (whose end_uid it calls), before
# the removal goes by the grant's name: the grant's account found by its uid, which no rename
# changes. The uid is the one the create reported, which the portal keeps (``account_uid``, checked
# by ``account_uid_value``), else (a grant made before creates reported it, a removal without a
# grant) what the host recorded of the uids it gave the name (/var/lib/passport/uids, root's, but a
# user with sudo may edit it). Only a uid of Passport's range counts: each is given once on a host,
# so its account is the grant's whatever it is named, never root's or another user's. Found under
# another name (a user with sudo renamed itself: usermod -l), the account is this grant's user all
# the same, and no longer as Passport made it: from here on the removal goes by the name it has now
# ($user) into the handling of an account out of Passport's group which the grant made
# (made_by_grant: a uid of the range given to the name), so it is locked, ended and left for an
# operator, never called removed. A name the account tools could read as an option or that is not
# a plain name (the user may edit /etc/passwd), or a removal without a grant (the reconcile
# sweep's), gets the same here, by the uid.
LINUX_RENAMED = r"""
grant_user=$user
renamed_to=""
renamed_uid=""
find_renamed() {
  local uid name file uids=$account_uid
  if [ -z "$uids" ]; then
    for file in /var/lib/passport/uids/*; do
      [ -f "$file" ] && [ "$(cat -- "$file")" = "$user" ] && uids="$uids ${file##*/}"
    done
  fi
  for uid in $uids; do
    case "$uid" in '' | 0* | *[!0-9]* | ???????????*) continue ;; esac
    [ "$uid" -ge __UID_FIRST__ ] && [ "$uid" -le __UID_LAST__ ] || continue
    name=$(getent passwd "$uid" | cut -d: -f1 || true)
    if [ -n "$name" ] && [ "$name" != "$user" ]; then
      renamed_to=$name
      renamed_uid=$uid
      return 0
    fi
  done
}
find_renamed
if [ -n "$renamed_to" ]; then
  echo "passport: $grant_user's account (uid $renamed_uid) has another name now" >&2
  if [ -z "$grant" ] || ! printf '%s' "$renamed_to" | grep -qxE '[A-Za-z0-9_][A-Za-z0-9_.-]*[$]?'; then
    usermod --lock --expiredate 1 -- "$renamed_to"
    end_uid "$renamed_uid"
    if { pgrep -u "$renamed_uid" || pgrep -U "$renamed_uid"; } >/dev/null 2>&1; then
      echo "passport: $grant_user's account (uid $renamed_uid) still has processes" >&2
      finish 4
    fi
    echo "__LEFT__" >&2
    finish __REFUSED__
  fi
  user=$renamed_to
  made_by_grant=yes
fi
"""
