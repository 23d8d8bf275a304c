"""The bash templates for Linux instances; ``scripts`` fills and checks them.

Create makes the user (or converges an existing Passport user on what its grant asks): a uid and
gid of Passport's own range, given once per host; a home only the user reads; the grant's
``authorized_keys`` lines; sudo only with administrator rights (without them, no grant's sudoers
file of the user stays). Removal takes away one grant's
lines and sudoers entry, and with the last grant the user: its processes, systemd user manager,
crontab and at jobs, what its uid owns where everyone may write, then the account and its home.
A user of the name outside Passport's group is someone else's and left alone, unless the grant made
it there (it left the group since): that one is locked, expired, taken out of the groups it joined,
rid of its cron and at jobs and ended, not deleted, and the removal exits
``REMOVAL_REFUSED_EXIT_CODE`` for an operator (``LINUX_LEFT``), as on Windows; so is the grant's
account found by its uid under another name (renamed: ``linux_uid.LINUX_RENAMED``).
Every script takes the host's lock and is idempotent: a rerun after a failure midway finishes the job.
"""

from __future__ import annotations

from fleet.linux_uid import LINUX_CLEAN_UID, LINUX_RENAMED
from fleet.ssh_keys import LINUX_GRANT_RECORDS, LINUX_SSHD_FIT

# A Linux script's exit code is what the portal reads of it (``exit 10``: the grant's user left
# Passport's group; ``exit 3``: the name is someone else's, not retried; 4, 5, 6, 8, 9: see each
# script), so only the script's own ``finish N`` ends it with one. The account tools it calls use
# the same small numbers for reasons of their own (userdel, useradd, usermod, groupadd exit 10 when
# they cannot lock /etc/group; useradd 3, 6 or 9), and under ``set -e`` a failing tool's code would
# be the script's: any other non-zero ending (a tool, in a function or not) becomes
# ``TOOL_FAILED_EXIT_CODE``, an ordinary failed try, with the tool's own code said on stderr.
TOOL_FAILED_EXIT_CODE = 1
LINUX_EXITS = r"""
passport_exit=0
finish() { passport_exit=$1; exit "$1"; }
trap 'passport_status=$?
if [ "$passport_status" -ne "$passport_exit" ]; then
  echo "passport: stopped by a failed command (its exit $passport_status)" >&2
  exit __TOOL_FAILED__
fi' EXIT
""".replace("__TOOL_FAILED__", str(TOOL_FAILED_EXIT_CODE))

# Passport's state on a host (which grants it holds, for which user, their lines, the uids given)
# is root's alone: no other user lists a grant or reads its lines. Created so (by root, in root's
# /var/lib), and closed on a host where an earlier version left it to the default umask.
LINUX_STATE = r"""
(umask 077 && mkdir -p /var/lib/passport/removed /var/lib/passport/grants /var/lib/passport/keys /var/lib/passport/uids)
chmod 0700 /var/lib/passport /var/lib/passport/removed /var/lib/passport/grants /var/lib/passport/keys \
  /var/lib/passport/uids
"""

LINUX_CREATE = (
    r"""#!/bin/bash
# Passport: create short-lived user __USER__ for __FOR_GRANTS__ (idempotent)
set -euo pipefail
"""
    + LINUX_EXITS
    + r"""user='__USER__'
marker='__MARKER__'
__GRANT_LINES__
# One sudoers file per grant: ending one grant takes away only what that grant gave.
sudoers="/etc/sudoers.d/passport-$user-$grant"
# Every grant's file of this user (the grant is a UUID), as the glob removal uses.
user_sudoers="/etc/sudoers.d/passport-$user-????????-????-????-????-????????????"
# One Passport script at a time on a host, and never a create after its grant's removal:
# a create that was still queued when the portal gave up on it must not bring the user back.
"""
    + LINUX_STATE
    + r"""
exec 9>/var/lib/passport/lock
flock -w 300 9
if [ -e "/var/lib/passport/removed/$grant" ]; then
  echo "refusing: grant $grant was already removed from this host" >&2
  finish 6
fi
"""
    + LINUX_GRANT_RECORDS
    + LINUX_SSHD_FIT
    + r"""
getent group "$marker" >/dev/null || groupadd --system "$marker"
if id "$user" >/dev/null 2>&1; then
  if ! id -nG "$user" | tr ' ' '\n' | grep -qx "$marker"; then
    echo "refusing: $user exists and is not a Passport user" >&2
    finish 3
  fi
else
  # No user, so no live grant of it: what records name it were left behind (a removal that
  # stopped midway, an earlier version's), and none may count for the user made now.
  forget_grants
  # A uid (and gid) of Passport's own range, each given once on this host: what a removed user
  # left behind can never pass to another grant's user. The counter moves before useradd.
  uid=$(cat /var/lib/passport/next-uid 2>/dev/null || echo __UID_FIRST__)
  case "$uid" in '' | 0* | *[!0-9]* | ???????????*)
    echo "refusing: /var/lib/passport/next-uid does not hold a uid" >&2
    finish 9 ;;
  esac
  [ "$uid" -ge __UID_FIRST__ ] || uid=__UID_FIRST__
  while getent passwd "$uid" >/dev/null || getent group "$uid" >/dev/null; do uid=$((uid + 1)); done
  if [ "$uid" -gt __UID_LAST__ ]; then
    echo "refusing: Passport's uids (__UID_FIRST__-__UID_LAST__) are all given" >&2
    finish 9
  fi
  echo "$((uid + 1))" > /var/lib/passport/next-uid.new
  mv -f /var/lib/passport/next-uid.new /var/lib/passport/next-uid
  echo "$user" > "/var/lib/passport/uids/$uid"
  # A group of this name is left only by an interrupted run of this script: its gid is of the range.
  gid=$(getent group "$user" | cut -d: -f3 || true)
  if [ -z "$gid" ]; then
    groupadd -g "$uid" "$user"
    gid=$uid
  elif [ "$gid" -lt __UID_FIRST__ ] || [ "$gid" -gt __UID_LAST__ ]; then
    echo "refusing: a group $user exists and is not a Passport user's" >&2
    finish 3
  fi
  useradd -u "$uid" -g "$gid" -l --create-home --shell /bin/bash --groups "$marker" \
    --comment '__COMMENT__' "$user"
fi
record_grant "$grant"
# No password login, but not "locked" either: sshd refuses keys for a locked account.
# The account's own expiry, a second lock: the day after the request's end (UTC). shadow counts
# whole days and reads the date in TZ, hence UTC here, whatever the host's zone.
TZ=UTC0 usermod --password '*' --expiredate '__EXPIRY__' "$user"
home=$(getent passwd "$user" | cut -d: -f6)
# The host's default (0755 on Debian) would let the other users read it.
if [ -d "$home" ] && [ ! -L "$home" ]; then chmod 0700 -- "$home"; fi
# This grant's lines, written afresh (CA keys may have rotated) and recorded as written; the file
# then holds exactly the recorded lines of the user's live grants (grant_lines), nothing it held before.
# As this host's sshd reads them: an option it does not know would make it refuse the whole line
# (``fleet.ssh_keys.LINUX_SSHD_FIT``).
keys=$(__AUTHORIZED_KEYS__ | fit_lines_to_sshd)
sshd_fit_said
if [ -n "$keys" ]; then printf '%s\n' "$keys"; fi > "/var/lib/passport/keys/$grant"
{ grant_lines "$grant"; cat -- "/var/lib/passport/keys/$grant"; } | write_user_keys
# The single per-user file of earlier versions: each grant now has its own.
rm -f "/etc/sudoers.d/passport-$user"
if [ '__SUDO__' = yes ]; then
  printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" > "$sudoers.passport"
  chmod 440 "$sudoers.passport"
  if ! visudo -cqf "$sudoers.passport"; then
    rm -f "$sudoers.passport"
    echo "refusing: the sudoers entry for $user does not validate" >&2
    finish 5
  fi
  mv -f "$sudoers.passport" "$sudoers"
else
  # Not only this grant's file: sudo is the user's, and the requests sharing the user must agree
  # on administrator rights (the portal refuses one that does not), so a file another grant left
  # (a request that failed before its cleanup ran, a host restored from a snapshot) must not give
  # this grant's user sudo.
  # shellcheck disable=SC2086 # the glob is meant: every grant's file of this user, temporary ones too
  rm -f $user_sudoers $user_sudoers.passport
fi
# The account's uid, which no rename changes: the portal keeps it (``fleet.linux_uid``), and the
# grant's removal finds the account by it, whatever it is named then.
echo "__UID_LINE__$(id -u "$user")"
echo "passport: $user ready for grant $grant"
"""
)

# What the removal writes when it leaves the grant's account, locked, for an operator (exit
# ``REMOVAL_REFUSED_EXIT_CODE``, filled in by ``scripts``). It names the grant's user as the portal
# knows it ($grant_user), whatever the account is named now.
LINUX_LEFT = (
    "passport: $grant_user was left here, locked: it is no longer in Passport's group ($marker) or no longer"
    " of its name, so it is not deleted; an operator must remove it"
)

LINUX_REMOVE = (
    r"""#!/bin/bash
# Passport: remove __FOR_GRANTS__ of short-lived user __USER__ (idempotent)
set -euo pipefail
"""
    + LINUX_EXITS
    + r"""user='__USER__'
marker='__MARKER__'
__GRANT_LINES__
"""
    + LINUX_STATE
    + r"""
# Every grant's sudoers file of this user (the grant is a UUID), as create's glob.
user_sudoers="/etc/sudoers.d/passport-$user-????????-????-????-????-????????????"
exec 9>/var/lib/passport/lock
flock -w 300 9
if [ -n "$grant" ]; then
  touch "/var/lib/passport/removed/$grant"
  find /var/lib/passport/removed -type f -mtime +3 -delete 2>/dev/null || true
fi
"""
    + LINUX_GRANT_RECORDS
    + LINUX_CLEAN_UID
    + LINUX_RENAMED
    + r"""
if id "$user" >/dev/null 2>&1; then
  if [ -n "$renamed_to" ] || ! id -nG "$user" | tr ' ' '\n' | grep -qx "$marker"; then
    if [ "$made_by_grant" != yes ]; then
      # Someone else's: nothing of Passport's is there to remove, and this account is left alone.
      echo "passport: $user is not a Passport user; left untouched"
      exit 0
    fi
    # This grant made the account here (it was ready once), which has left Passport's group since
    # (a user with sudo may take itself out): still this grant's user, but perhaps no longer
    # Passport's to delete. Everything short of that: the grant's records and every Passport
    # sudoers file of the user go, the account is locked and expired (no new login), taken out of
    # every group it joined with its sudo, its cron and at jobs deleted, what it runs is ended;
    # then it is left for an operator (exit __REFUSED__), never called removed. Its files stay,
    # its authorized_keys too (the user's own file, and no key opens a locked, expired account).
    rm -f "/var/lib/passport/grants/$grant" "/var/lib/passport/keys/$grant"
    # shellcheck disable=SC2086 # the glob is meant: every grant's file of this user
    rm -f "/etc/sudoers.d/passport-$user" $user_sudoers $user_sudoers.passport
    usermod --lock --expiredate 1 "$user"
    rm -f "/var/lib/systemd/linger/$user"
    uid=$(id -u "$user")
    drop_jobs "$uid"
    end_uid "$uid"
    # Passport gave it its own group and the marker group only: any other (sudo, adm, docker,
    # disk...) it took itself, and an operator who unlocks it must not hand it back. Its primary
    # group stays, unless it made another one its primary: then its own again, where that still is.
    # The shadow tools refuse to write a group file holding a name they find invalid (a control
    # character): then the groups stay, said, and the operator is asked all the same.
    gid=$(id -g "$user")
    own=$(getent group "$user" | cut -d: -f3 || true)
    case "$own" in '' | *[!0123456789]*) own="" ;; esac
    [ -n "$own" ] && [ "$own" -ge __UID_FIRST__ ] && [ "$own" -le __UID_LAST__ ] || own=""
    taken=""
    for group in $(id -G "$user"); do
      if [ "$group" != "$gid" ]; then
        taken="$taken, $(group_said "$group")"
      elif [ -n "$own" ] && [ "$group" != "$own" ]; then
        taken="$taken, $(group_said "$group") (its primary group)"
      fi
    done
    if [ -n "$taken" ] && usermod --groups '' "$user" &&
      { [ -z "$own" ] || [ "$gid" = "$own" ] || usermod --gid "$own" "$user"; }; then
      echo "passport: $user was taken out of the groups: ${taken#, }" >&2
    fi
    kept=""
    gid=$(id -g "$user")
    for group in $(id -G "$user"); do
      if [ "$group" != "$gid" ]; then
        kept="$kept, $(group_said "$group")"
      elif [ "$group" != "$own" ]; then
        kept="$kept, $(group_said "$group") (its primary group)"
      fi
    done
    if [ -n "$kept" ]; then echo "passport: $user is still in the groups: ${kept#, }" >&2; fi
    if { pgrep -u "$uid" || pgrep -U "$uid"; } >/dev/null 2>&1; then
      echo "passport: $user still has processes" >&2
      finish 4
    fi
    echo "__LEFT__" >&2
    finish __REFUSED__
  fi
  home=$(getent passwd "$user" | cut -d: -f6)
  if [ -n "$grant" ]; then
    rm -f "/var/lib/passport/grants/$grant" "/var/lib/passport/keys/$grant" "/etc/sudoers.d/passport-$user-$grant"
    # Other live grants of this person on this host, as root's records say (never the user's own
    # file), keep the user and their recorded lines; this grant's certificate is refused from now on.
    live=$(live_grants "$grant")
    if [ -n "$live" ]; then
      grant_lines "$grant" | write_user_keys
      echo "passport: grant $grant removed; $user kept for $(printf '%s\n' "$live" | wc -l) live grant(s)"
      exit 0
    fi
  fi
  # Lock first, so no new session starts while the old ones are ended.
  usermod --lock --expiredate 1 "$user"
  # Known from here on even once the account is gone, for a rerun to finish the cleaning.
  echo "$user" > "/var/lib/passport/uids/$(id -u "$user")"
  rm -f "/var/lib/systemd/linger/$user"
  for uid in $(user_uids); do clean_uid "$uid"; done
  userdel --remove "$user" 2>/dev/null || userdel --force --remove "$user" 2>/dev/null || userdel "$user"
  case "$home" in /home/rs-*) rm -rf -- "$home" ;; esac
else
  # A rerun after an interruption: what the uids of the gone account may still own.
  for uid in $(user_uids); do clean_uid "$uid"; done
fi
forget_grants
# The group of a create that stopped before its useradd (its gid is of Passport's range).
gid=$(getent group "$user" | cut -d: -f3 || true)
if [ -n "$gid" ] && ! id "$user" >/dev/null 2>&1 && [ "$gid" -ge __UID_FIRST__ ] && [ "$gid" -le __UID_LAST__ ]; then
  groupdel "$user"
fi
grant_sudoers="/etc/sudoers.d/passport-$user-????????-????-????-????-????????????"
# shellcheck disable=SC2086 # the glob is meant: every grant's file of this user
rm -f "/etc/sudoers.d/passport-$user" $grant_sudoers
# A home left by an earlier, interrupted removal carries the Passport name pattern.
rm -rf -- "/home/$user"
left=""
id "$user" >/dev/null 2>&1 && left="$left account"
# Never "removed" while an account of another name still has the grant's group or home.
[ -n "$(found_by_group_or_home)" ] && left="$left account(another name)"
for uid in $(user_uids); do
  { pgrep -u "$uid" || pgrep -U "$uid"; } >/dev/null 2>&1 && left="$left processes($uid)"
  [ -n "$(find $SHARED_DIRS "/run/user/$uid" $SPOOL_DIRS -xdev -uid "$uid" -print -quit 2>/dev/null)" ] &&
    left="$left files($uid)"
done
{ [ -e "/etc/sudoers.d/passport-$user" ] || compgen -G "$grant_sudoers" >/dev/null; } && left="$left sudoers"
[ -e "/home/$user" ] && left="$left home"
if [ -n "$left" ]; then
  echo "passport: $user still has:$left" >&2
  finish 4
fi
for uid in $(user_uids); do rm -f "/var/lib/passport/uids/$uid"; done
echo "passport: $user removed"
"""
).replace("__LEFT__", LINUX_LEFT)

# The list script's last line, with how many names it listed: a listing Systems Manager cut short has none.
LIST_END = "passport-listed"
LINUX_LIST = (
    r"""#!/bin/bash
# Passport: list the short-lived users on this host (members of the marker group, and renamed ones), then how many
set -euo pipefail
"""
    + LINUX_EXITS
    + r"""
# An account Passport made and a user with sudo renamed since (usermod -l) is listed by the name
# Passport gave it, as root's record of the uids given says (a uid of Passport's range, whose
# account now has another name): its removal then finds it by that uid (``LINUX_RENAMED``).
renamed_users() {
  local file uid name
  for file in /var/lib/passport/uids/*; do
    [ -f "$file" ] || continue
    uid=${file##*/}
    case "$uid" in '' | 0* | *[!0-9]* | ???????????*) continue ;; esac
    [ "$uid" -ge __UID_FIRST__ ] && [ "$uid" -le __UID_LAST__ ] || continue
    name=$(getent passwd "$uid" | cut -d: -f1 || true)
    if [ -n "$name" ] && [ "$name" != "$(cat -- "$file")" ]; then cat -- "$file"; fi
  done
}
users="$({ getent group '__MARKER__' | cut -d: -f4 | tr ',' '\n'; renamed_users; } |
  grep -E '^rs-[a-z2-7]{8}(-[a-z2-7]{4})?$' | sort -u || true)"
[ -z "$users" ] || printf '%s\n' "$users"
echo "__END__ $(printf '%s' "$users" | grep -c '' || true)"
"""
)
