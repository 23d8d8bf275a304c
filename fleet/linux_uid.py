"""A Linux grant's account told by its uid, which no rename changes.

A user with sudo may rename its own account (``usermod -l``), and a removal that looked for the
grant's name alone would then find nothing and call the grant removed while the account lived on.
So the create script reports the account's uid (``ACCOUNT_UID_LINE``), the portal keeps it on the
grant (``Grant.account_uid``), and the removal finds the account by it (``LINUX_RENAMED``),
as a Windows grant's is found by its SID (``windows_sid``); renamed and moved out of the range
(``usermod -l NEW -u N``), by its primary group or its home. The uid comes from the host's output:
only one of Passport's own range (``UID_FIRST`` to ``UID_LAST``, each given once on a host) is kept,
and checked again before it is put in a removal script; never root's, nor any other account's.
What a removed user's uids may have left is cleaned here too (``LINUX_CLEAN_UID``).
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


# Removal's end of "a uid is given once": everything a uid of the user may have left, ended or
# deleted before userdel frees its name. Its uids are recorded in /var/lib/passport/uids, so a
# rerun after an interruption still cleans them; none of them ever goes to another user.
LINUX_CLEAN_UID = r"""
SHARED_DIRS="/tmp /var/tmp /dev/shm"
SPOOL_DIRS="/var/spool/cron /var/spool/at"
user_uids() {
  local file uid owner
  for file in /var/lib/passport/uids/*; do
    [ -f "$file" ] && [ "$(cat -- "$file")" = "$user" ] || continue
    uid=${file##*/}
    owner=$(getent passwd "$uid" | cut -d: -f1 || true)
    # A uid an older version gave out (freed, so perhaps another account's now) is left alone.
    [ -z "$owner" ] || [ "$owner" = "$user" ] || continue
    echo "$uid"
  done
}
# Whether a uid is one account's alone, so what it runs and owns may go: never root's, nor one a
# renamed account took beside another's (usermod -o -u) or that no account has.
uid_alone() {
  case "$1" in '' | 0* | *[!0-9]* | ???????????*) return 1 ;; esac
  [ "$(getent passwd | awk -F: -v u="$1" '$3 == u' | grep -c '' || true)" -le 1 ]
}
# What the uid runs: its systemd user manager and sessions ended, its processes killed, in rounds.
end_uid() {
  local uid=$1
  if ! uid_alone "$uid"; then
    echo "passport: uid $uid is not one account's alone: what it runs is left to an operator" >&2
    return 0
  fi
  if [ -d /run/systemd/system ] && command -v loginctl >/dev/null 2>&1; then
    timeout 30 loginctl disable-linger "$uid" >/dev/null 2>&1 || true
    timeout 30 loginctl terminate-user "$uid" >/dev/null 2>&1 || true
  fi
  for _ in $(seq 1 20); do
    pkill -KILL -u "$uid" 2>/dev/null || true
    pkill -KILL -U "$uid" 2>/dev/null || true
    { pgrep -u "$uid" || pgrep -U "$uid"; } >/dev/null 2>&1 || break
    sleep 0.25
  done
}
# The user's cron and at jobs: a cron that does not ask PAM about the account runs a locked,
# expired one's jobs. Through the tools where the host has them, then the spools' files themselves
# (Debian's crontabs/ and atjobs/, Red Hat's cron/ and at/, SUSE's tabs/): a crontab is found by
# its name, an at job by its owner, the uid.
drop_jobs() {
  local uid=$1 dir
  if command -v crontab >/dev/null 2>&1; then crontab -r -u "$user" >/dev/null 2>&1 || true; fi
  if command -v atq >/dev/null 2>&1; then
    { atq 2>/dev/null || true; } | awk -v u="$user" '$NF == u { print $1 }' | xargs -r atrm 2>/dev/null || true
  fi
  for dir in /var/spool/cron/crontabs /var/spool/cron /var/spool/cron/tabs; do
    [ -d "$dir" ] && [ ! -L "$dir" ] && [ ! -L "$dir/$user" ] && [ -f "$dir/$user" ] && rm -f -- "$dir/$user"
  done
  uid_alone "$uid" || return 0
  # Never the whole disk, never through a symlink (find -P), one filesystem each.
  for dir in $SPOOL_DIRS; do
    [ -d "$dir" ] && [ ! -L "$dir" ] || continue
    find "$dir" -xdev -depth -uid "$uid" -delete 2>/dev/null || true
  done
}
# A group as the script's output names it: a group's name is the host's data (in the group file,
# any character but a colon or a newline), said as it is only when plain, else as its gid.
group_said() {
  local gid=$1 name
  name=$(getent group "$gid" | cut -d: -f1 || true)
  case "$name" in
    '' | -* | *[!abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-]*) echo "gid $gid" ;;
    *) if [ "${#name}" -le 32 ]; then echo "$name"; else echo "gid $gid"; fi ;;
  esac
}
clean_uid() {
  local uid=$1 dir
  end_uid "$uid"
  drop_jobs "$uid"
  # Never the whole disk, never through a symlink (find -P, -execdir), one filesystem each.
  for dir in $SHARED_DIRS "/run/user/$uid"; do
    [ -d "$dir" ] && [ ! -L "$dir" ] || continue
    find "$dir" -xdev -depth -uid "$uid" -delete 2>/dev/null || true
  done
  # What stays there (a directory holding others' files) becomes root's, without set-id bits.
  for dir in $SHARED_DIRS "/run/user/$uid"; do
    [ -d "$dir" ] && [ ! -L "$dir" ] || continue
    find "$dir" -xdev -uid "$uid" ! -type l -execdir chmod ug-s {} + 2>/dev/null || true
    find "$dir" -xdev -uid "$uid" -execdir chown -h 0:0 {} + 2>/dev/null || true
  done
}
"""

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
# The uids known as the grant's: the one the portal keeps, else (or with "all") those the host
# recorded for the name.
grant_ids() {
  local file id
  for id in $account_uid; do printf '%s\n' "$id"; done
  [ -z "$account_uid" ] || [ "${1:-}" = all ] || return 0
  for file in /var/lib/passport/uids/*; do
    [ -f "$file" ] && [ "$(cat -- "$file")" = "$user" ] && printf '%s\n' "${file##*/}"
  done
  return 0
}
# An account of another name whose primary group is the grant's (its gid, given with the uid and
# the same number, or one recorded for the name where an interrupted create left the group), or
# whose home is the grant user's: "name uid" of the first, else nothing. Root's own entry is never
# taken; one the account gave root's uid (usermod -o -u 0) is, and the uid then never ended
# (``uid_alone``).
found_by_group_or_home() {
  local name uid gid home id ids
  ids=$(grant_ids all)
  while IFS=: read -r name _ uid gid _ home _; do
    [ -n "$name" ] && [ "$name" != "$user" ] && [ "$name" != root ] || continue
    case "$uid" in '' | *[!0-9]*) continue ;; esac
    if [ "$home" = "/home/$user" ]; then printf '%s %s\n' "$name" "$uid"; return 0; fi
    for id in $ids; do
      case "$id" in '' | 0* | *[!0-9]* | ???????????*) continue ;; esac
      [ "$id" -ge __UID_FIRST__ ] && [ "$id" -le __UID_LAST__ ] || continue
      if [ "$gid" = "$id" ]; then printf '%s %s\n' "$name" "$uid"; return 0; fi
    done
  done < <(getent passwd || true)
  return 0
}
find_renamed() {
  local uid name found
  for uid in $(grant_ids); do
    case "$uid" in '' | 0* | *[!0-9]* | ???????????*) continue ;; esac
    [ "$uid" -ge __UID_FIRST__ ] && [ "$uid" -le __UID_LAST__ ] || continue
    name=$(getent passwd "$uid" | cut -d: -f1 || true)
    if [ -n "$name" ] && [ "$name" != "$user" ]; then
      renamed_to=$name
      renamed_uid=$uid
      return 0
    fi
  done
  # Renamed and moved to a uid out of Passport's range (usermod -l NEW -u N): its group and its
  # home still tell it, unless it moved those too.
  if id "$user" >/dev/null 2>&1; then return 0; fi
  found=$(found_by_group_or_home)
  if [ -n "$found" ]; then
    renamed_to=${found% *}
    renamed_uid=${found##* }
  fi
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
