"""What a grant's ``authorized_keys`` lines say, and which lines of that file may stay.

Each Linux grant trusts the portal's user CAs for certificates naming its own principal only
(``cert-authority,principals="grant-<uid>"``, the portal's own login), and its direct principal
beside it only while the account lets a person's key log in to sshd
(``principals="grant-<uid>,direct-grant-<uid>"``), and asks sshd for the proxy's forwarding rule
(``grant_key_options``). The scripts in ``fleet.scripts`` write these lines, record them in root's
state on the host, and rewrite the user's file from those records alone (``LINUX_GRANT_RECORDS``).
Every value is checked against a strict pattern before it goes near a script.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from core.destinations import InvalidDestination, canonical_destination
from core.usernames import InvalidPrincipal, direct_principal, grant_principal, validate_principal
from fleet.sshd_key_files import LINUX_SSHD_KEY_FILES

_GRANT_UID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# The instance itself, as ``ssh -L`` names it: what a grant's forwards may reach (``grant_key_options``).
FORWARD_HOSTS = ("localhost", "127.0.0.1", "[::1]")
NO_REMOTE_FORWARDS = 'permitlisten="localhost:1"'
_EXPIRY_TIME_RE = re.compile(r"^[0-9]{12}Z$")
_CA_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}$")

# How long a step run as the user (``write_user_keys``) may take, in seconds.
USER_STEP_SECONDS = 60

# Shared by create and remove: what the host holds for the user, read from Passport's root-only
# state (/var/lib/passport, 0700, ``fleet.linux_scripts.LINUX_STATE``) and never from the user's
# own authorized_keys. A grant is the user's and live when its create registered it for this user
# (grants/<grant> names the user, then ``record_form``) and no removal has tombstoned it
# (removed/<grant>); its lines are exactly those its create wrote and recorded (keys/<grant>).
# A record without ``record_form`` is an earlier version's, whose removals left records behind
# (a removal without a grant, one that found the user gone): it counts for nothing, and a live
# grant's own create (the refresh every live Linux grant gets) writes it again in this form.
# The user's file is Passport's alone: every create and removal rewrites it whole from these
# records, so a line the user wrote there (a personal key, a CA of its own for its own or another
# person's grant, a copy of another person's line, a grant's line widened) keeps nothing and
# survives nothing; nor does one in another file sshd reads keys from under the home
# (``fleet.sshd_key_files``), which the same step removes.
LINUX_GRANT_RECORDS = (
    LINUX_SSHD_KEY_FILES
    + r"""
record_form='passport-grant-record 2'
# This grant's record ($1), as only this version's create writes it.
record_grant() {
  printf '%s\n%s\n' "$user" "$record_form" > "/var/lib/passport/grants/$1"
}
# The user's live grants on this host, but the one named ($1: the grant being created or removed).
# A removal is told which of the person's grants on this host the portal's own database holds live
# (live_known=yes, their ids in portal_live): a record of any other grant, one a user with sudo
# wrote itself, keeps nothing.
live_grants() {
  local file g
  for file in /var/lib/passport/grants/*; do
    [ -f "$file" ] || continue
    g=${file##*/}
    case "$g" in '' | *[!0-9a-f-]*) continue ;; esac
    [ "${#g}" -eq 36 ] || continue
    [ "$g" = "$1" ] && continue
    [ -e "/var/lib/passport/removed/$g" ] && continue
    if [ "${live_known:-no}" = yes ]; then
      case " $portal_live " in *" $g "*) ;; *) continue ;; esac
    fi
    [ "$(cat -- "$file")" = "$user"$'\n'"$record_form" ] || continue
    printf '%s\n' "$g"
  done
}
# The lines recorded for those grants, as recorded; a line that names another grant is not its.
grant_lines() {
  local g line
  for g in $(live_grants "$1"); do
    [ -f "/var/lib/passport/keys/$g" ] || continue
    while IFS= read -r line || [ -n "$line" ]; do
      case "$line" in
        "cert-authority,principals=\"grant-$g\","* | "cert-authority,principals=\"grant-$g\" "* | \
          "cert-authority,principals=\"grant-$g,direct-grant-$g\","* | \
          "cert-authority,principals=\"grant-$g,direct-grant-$g\" "*)
          printf '%s\n' "$line" ;;
      esac
    done < "/var/lib/passport/keys/$g"
  done
}
# With the user, every grant of it leaves Passport's state, an earlier version's records too: a
# stale record would count as live later.
forget_grants() {
  local file owner
  for file in /var/lib/passport/grants/*; do
    [ -f "$file" ] || continue
    owner=""
    IFS= read -r owner < "$file" || true
    [ "$owner" = "$user" ] || continue
    rm -f -- "$file" "/var/lib/passport/keys/${file##*/}"
  done
}
# The user's own file is written as the user, never as root: a symlink the user left in their own
# .ssh directory then reaches only what the user could reach anyway. The script holds the host's
# lock meanwhile, so nothing the user left there may stall it: the user's process does not get the
# lock's descriptor (9>&-, else a process the user left holding it would keep every other script
# of the host waiting), writes a new file of its own (mktemp: O_EXCL, never a FIFO, device or
# symlink planted at a known name) renamed over the file (mv -T: the entry itself, whatever it was,
# never into a directory), and is bounded in time (``USER_STEP_SECONDS``): a grant then fails with
# the reason said, it never hangs. Every other file sshd reads keys from under the home
# (``fleet.sshd_key_files``: authorized_keys2 at least) is removed in the same step, as the user
# (rm: the entry itself, a symlink never followed): a line kept there would outlive the rewrite.
write_user_keys() {
  local status=0 others=() other
  while IFS= read -r other; do others+=("$other"); done < <(sshd_other_key_files)
  timeout --kill-after=5 __USER_STEP_SECONDS__ runuser -u "$user" -- sh -c 'umask 077 && mkdir -p -- "$1" &&
    chmod 700 -- "$1" && written=$(mktemp -- "$1/authorized_keys.passport.XXXXXXXXXX") || exit 1
    if ! { cat > "$written" && mv -fT -- "$written" "$1/authorized_keys"; }; then rm -f -- "$written"; exit 1; fi
    shift
    for other in "$@"; do
      rm -f -- "$other" 2>/dev/null || true
      if [ -L "$other" ] || { [ -e "$other" ] && [ ! -d "$other" ]; }; then
        echo "passport: could not remove $other, which sshd reads keys from" >&2; exit 1
      fi
    done' sh "$home/.ssh" ${others[@]+"${others[@]}"} 9>&- || status=$?
  if [ "$status" -ne 0 ]; then
    echo "passport: could not write $user's authorized_keys as the user" \
      "(exit $status, 124: over __USER_STEP_SECONDS__ s)" >&2
    return "$status"
  fi
}
""".replace("__USER_STEP_SECONDS__", str(USER_STEP_SECONDS))
)


# What the create writes of a grant's lines is what the host's sshd reads: an option it does not
# know makes it refuse the whole line ("Bad options in authorized_keys"), so nobody logs in.
# ``expiry-time`` is OpenSSH 7.7's and ``permitlisten`` 7.8's; Amazon Linux 2 and CentOS 7 ship 7.4.
# Older than 7.7, the line goes without expiry-time: the certificate's own validity (the request's
# end when it was signed) and the account's expiry bound the login there, and the script says so
# (``LINES_WITHOUT_EXPIRY_TIME``). Older than 7.8, a line with forwards cannot refuse remote ones
# while it allows local ones (before 7.8 permitopen limits -L only, and -R is open): it gets
# no-port-forwarding instead, so forwards are refused there, never logins, never a remote listen.
# The version is read from sshd (its -V, or the usage an older one prints for it), else from the
# ssh client of the same package, strictly as ``OpenSSH_<major>.<minor>``; not told (not OpenSSH,
# no output, a wrapper): taken as old. A bound not written is then never claimed, and no forward
# rule is loosened; a new sshd unrecognised loses only its forwards, and says why on stderr.
LINES_WITHOUT_EXPIRY_TIME = "passport: lines written without expiry-time"
LINUX_SSHD_FIT = r"""
sshd_version=""
openssh_version() {
  local tool line
  for tool in "$(command -v sshd 2>/dev/null || echo /usr/sbin/sshd)" "$(command -v ssh 2>/dev/null || true)"; do
    [ -n "$tool" ] && [ -x "$tool" ] || continue
    while IFS= read -r line; do
      if [[ "$line" =~ ^OpenSSH_([1-9][0-9]?)\.([0-9]{1,2})([p\ ,]|$) ]]; then
        sshd_version=$((10#${BASH_REMATCH[1]} * 100 + 10#${BASH_REMATCH[2]}))
        return 0
      fi
    done < <(timeout 10 "$tool" -V 2>&1 </dev/null 9>&- | head -n 20 || true)
  done
}
openssh_version
# The grant's lines (stdin) as this host's sshd reads them (``sshd_fit_said`` says what was left out).
fit_lines_to_sshd() {
  local fit=""
  if [ -z "$sshd_version" ] || [ "$sshd_version" -lt 707 ]; then fit='s|,expiry-time="[0-9]\{12\}Z"||;'; fi
  if [ -z "$sshd_version" ] || [ "$sshd_version" -lt 708 ]; then
    fit="$fit"'/,__NO_REMOTE__ /{s|,permitopen="[^"]*"||g;s|,__NO_REMOTE__ |,no-port-forwarding |;}'
  fi
  if [ -n "$sshd_version" ] && [ "$sshd_version" -ge 707 ] && [ "$sshd_version" -lt 901 ]; then
    sed -e "$fit" | expiry_times_in_local_time
  else
    sed -e "$fit"
  fi
}
# OpenSSH reads a UTC time ("...Z") from 9.1 on; 7.7 to 9.0 take 12 digits only, and refuse the whole
# line otherwise. Those read them as mktime does a struct tm with tm_isdst 0: in the system's zone, at
# its standard offset, summer time or not. The minute is written at the smaller of the zone's offsets
# in January and July of its year (the standard one wherever summer time adds to it), so sshd reads
# the request's end, or an hour before it in a zone whose standard time is the larger: never after.
zone_offset_seconds() {
  local at=$1 said sign
  said=$(env -u TZ date -d "@$at" +%z)
  [[ "$said" =~ ^([+-])([0-9]{2})([0-9]{2})$ ]] || return 1
  sign=${BASH_REMATCH[1]}1
  echo $((sign * (10#${BASH_REMATCH[2]} * 3600 + 10#${BASH_REMATCH[3]} * 60)))
}
expiry_times_in_local_time() {
  local line stamp epoch january july offset here
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ "$line" =~ expiry-time=\"([0-9]{12})Z\" ]]; then
      stamp=${BASH_REMATCH[1]}
      epoch=$(date -u -d "${stamp:0:4}-${stamp:4:2}-${stamp:6:2} ${stamp:8:2}:${stamp:10:2}" +%s)
      january=$(zone_offset_seconds "$(date -u -d "${stamp:0:4}-01-01 12:00" +%s)")
      july=$(zone_offset_seconds "$(date -u -d "${stamp:0:4}-07-01 12:00" +%s)")
      offset=$((january < july ? january : july))
      here=$(date -u -d "@$((epoch + offset))" +%Y%m%d%H%M)
      [[ "$here" =~ ^[0-9]{12}$ ]] || { echo "passport: could not write $stamp in local time" >&2; return 1; }
      line=${line/"expiry-time=\"${stamp}Z\""/"expiry-time=\"${here}\""}
    fi
    printf '%s\n' "$line"
  done
}
sshd_fit_said() {
  local said=${sshd_version:-unknown}
  if [ -z "$sshd_version" ] || [ "$sshd_version" -lt 707 ]; then
    echo "__NO_EXPIRY__ (OpenSSH version here: $said)"
    echo "passport: sshd here (OpenSSH version $said) refuses expiry-time: the lines are bounded by" \
      "the certificate's validity and the account's expiry" >&2
  fi
  if [ -z "$sshd_version" ] || [ "$sshd_version" -lt 708 ]; then
    echo "passport: sshd here (OpenSSH version $said) refuses permitlisten: the grant's forwards are refused" >&2
  fi
}
""".replace("__NO_EXPIRY__", LINES_WITHOUT_EXPIRY_TIME).replace("__NO_REMOTE__", NO_REMOTE_FORWARDS)


# The one line the script prints when it wrote the lines without expiry-time, exactly: the version is
# ``sshd_version`` (major * 100 + minor, three digits below 7.7) or ``unknown``. The host's output
# is the host's to forge; nothing else in the line is read, and only the version parsed here leaves.
_WITHOUT_EXPIRY_RE = re.compile(
    re.escape(LINES_WITHOUT_EXPIRY_TIME) + r" \(OpenSSH version here: ([1-9][0-9]{2}|unknown)\)"
)


def lines_without_expiry_time(output: str) -> str | None:
    """The OpenSSH version (``"7.4"``, or ``"unknown"``) a Linux create's output (a create, a key
    refresh, an expiry move: the same script) says its host's sshd is, when it says the grant's lines
    went without ``expiry-time`` there; None when it does not say so. A line that is not exactly the
    script's (anything before or after it, a version of 7.7 or later, or not three digits) is not
    taken: the portal then records the bound as written, as it did before the script could leave it out."""
    for line in output.split("\n"):
        found = _WITHOUT_EXPIRY_RE.fullmatch(line)
        if found is None:
            continue
        if found[1] == "unknown":
            return "unknown"
        version = int(found[1])
        if version < 707:
            return f"{version // 100}.{version % 100}"
    return None


class UnsafeScriptValue(ValueError):
    """A value that may not go into a script (``fleet.scripts``) or an authorized_keys line."""


def grant_token(grant_uid: object) -> str:
    token = str(grant_uid)
    if not _GRANT_UID_RE.fullmatch(token):
        raise UnsafeScriptValue("a grant uid is a UUID")
    return token


def key_expiry_time(expires_at: datetime) -> str:
    """sshd's ``expiry-time`` for a line that must not outlive ``expires_at``: ``YYYYMMDDHHMMZ`` in
    UTC, the minute rounded down (the line stops taking certificates at that minute's first second,
    a little before the request's end, never after it)."""
    if not isinstance(expires_at, datetime) or expires_at.utcoffset() is None:
        raise UnsafeScriptValue("a line's expiry is a moment with its time zone (the request's end)")
    value = expires_at.astimezone(UTC).strftime("%Y%m%d%H%MZ")
    if not _EXPIRY_TIME_RE.fullmatch(value):
        raise UnsafeScriptValue("a line's expiry is a four-digit year's minute")
    return value


def grant_key_options(
    *,
    principal: str,
    forward_ports: Iterable[object],
    forward_destinations: Iterable[object] = (),
    direct_login: bool = False,
    expires_at: datetime | None = None,
) -> str:
    """The options of a grant's ``authorized_keys`` lines: certificates for ``principal`` alone (and,
    with ``direct_login``, for its direct principal too: ``core.usernames.direct_principal``), and what
    sshd lets that SSH connection reach, through the portal's proxy or not.

    ``ssh -L`` and ``-D`` reach only the instance itself (the three names the proxy accepts) on
    the account's ports (``AwsAccount.forward_ports``), and to the request's ``forward_destinations``
    beyond it (``AccessRequest.destinations_in_force``, each ``host:port`` in the one spelling of
    ``core.destinations``, an IPv6 host in brackets as sshd wants it); ``-R`` is refused. authorized_keys has
    no "none" for ``permitlisten``: the one listen permission given, port 1 on loopback, is one
    no unprivileged user may bind, so sshd refuses every remote forward. With nothing to reach,
    ``no-port-forwarding`` (without a ``permitopen``, sshd would open anything).

    Defence in depth, not a boundary: the file is the user's, who has a shell, and sshd applies
    neither option to Unix-socket forwards. The boundary is the recording proxy's.

    With ``expires_at`` (the request's end), sshd takes no certificate through the line from that
    minute on (``expiry-time``, ``key_expiry_time``), whatever the certificate's own validity says:
    one signed before a policy shortened the request outlives it otherwise, on a host whose removal
    has not run. The expiry sync that moves the account's expiry rewrites the line with it.
    """
    try:
        principal = validate_principal(principal)
    except InvalidPrincipal as error:
        raise UnsafeScriptValue(str(error)) from None
    principals = f"{principal},{direct_principal(principal.removeprefix('grant-'))}" if direct_login else principal
    trusted = f'cert-authority,principals="{principals}"'
    if expires_at is not None:
        trusted += f',expiry-time="{key_expiry_time(expires_at)}"'
    ports = set()
    for port in forward_ports:
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise UnsafeScriptValue("a forwarding port is a whole number from 1 to 65535")
        ports.add(port)
    destinations: list[str] = []
    for destination in forward_destinations:
        try:
            canonical = canonical_destination(destination)
        except InvalidDestination as error:
            raise UnsafeScriptValue(f"not a forwarding destination: {error}") from None
        if canonical != destination:
            raise UnsafeScriptValue("a forwarding destination is written as core.destinations spells it")
        if canonical not in destinations:
            destinations.append(canonical)
    if not ports and not destinations:
        return f"{trusted},no-port-forwarding"
    targets = [f"{host}:{port}" for port in sorted(ports) for host in FORWARD_HOSTS] + destinations
    opens = ",".join(f'permitopen="{target}"' for target in targets)
    return f"{trusted},{opens},{NO_REMOTE_FORWARDS}"


def authorized_keys(
    *,
    grant_uid: object,
    ca_public_keys: Sequence[str],
    forward_ports: Iterable[object],
    forward_destinations: Iterable[object] = (),
    direct_login: bool = False,
    expires_at: datetime | None = None,
) -> str:
    """One ``cert-authority`` line per trusted CA, limited to certificates for this grant's
    principal (and its direct principal with ``direct_login``: the account lets a person's key log
    in to sshd), until ``expires_at`` (its request's end), and to forwards to the instance's own
    ``forward_ports`` and the request's ``forward_destinations`` (``grant_key_options``)."""
    options = grant_key_options(
        principal=grant_principal(grant_token(grant_uid)),
        forward_ports=forward_ports,
        forward_destinations=forward_destinations,
        direct_login=direct_login is True,
        expires_at=expires_at,
    )
    lines = []
    for key in ca_public_keys:
        key = " ".join(key.split()[:2])  # drop the comment: only type and blob are needed
        if not _CA_KEY_RE.fullmatch(key):
            raise UnsafeScriptValue("not an OpenSSH public key")
        lines.append(f"{options} {key}\n")
    return "".join(lines)
