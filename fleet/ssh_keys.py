"""What a grant's ``authorized_keys`` lines say, and which lines of that file may stay.

Each Linux grant trusts the portal's user CAs for certificates naming its own principal only
(``cert-authority,principals="grant-<uid>"``), and asks sshd for the proxy's forwarding rule
(``grant_key_options``). The scripts in ``fleet.scripts`` write these lines and keep, from what
the file holds, only well-formed lines of grants the host still holds (``LINUX_KEEP_LINES``).
Every value is checked against a strict pattern before it goes near a script.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from core.destinations import InvalidDestination, canonical_destination
from core.usernames import InvalidPrincipal, grant_principal, validate_principal

_GRANT_UID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# The instance itself, as ``ssh -L`` names it: what a grant's forwards may reach (``grant_key_options``).
FORWARD_HOSTS = ("localhost", "127.0.0.1", "[::1]")
NO_REMOTE_FORWARDS = 'permitlisten="localhost:1"'
_CA_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}$")

# Shared by create and remove: the lines of ``authorized_keys`` that may stay. Only well-formed
# grant lines survive (anything else in the file is dropped), and only for grants this host
# still holds: registered by their create (root-owned, under /var/lib/passport/grants) and not
# tombstoned by their removal. A line the user wrote into their own file survives nothing.
# Well-formed is: the instance's own forwards as every version writes them (the pattern), or,
# for a line that reaches further (a request's forwarding destinations), exactly a line its
# grant's create wrote and recorded (root-owned, /var/lib/passport/keys/<grant>): a host or port
# added to it, even one that would pass any pattern, is not what was approved and is dropped.
LINUX_KEEP_LINES = r"""
keep_grant_lines() {
  local line g pattern
  pattern='^cert-authority,principals="grant-[0-9a-f-]{36}"'
  # The forward options of grant_key_options; lines of earlier versions have none.
  pattern+='(,permitopen="(localhost|127\.0\.0\.1|\[::1\]):[0-9]{1,5}")*'
  pattern+='(,permitlisten="localhost:1"|,no-port-forwarding)? '
  pattern+='(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}$'
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in 'cert-authority,principals="grant-'*) ;; *) continue ;; esac
    g=${line#cert-authority,principals=\"grant-}
    g=${g%%\"*}
    case "$g" in '' | *[!0-9a-f-]*) continue ;; esac
    [ "${#g}" -eq 36 ] || continue
    [ "$g" = "$1" ] && continue
    [ -e "/var/lib/passport/grants/$g" ] || continue
    [ -e "/var/lib/passport/removed/$g" ] && continue
    if printf '%s\n' "$line" | grep -qE "$pattern" ||
      grep -qxF -e "$line" "/var/lib/passport/keys/$g" 2>/dev/null; then
      printf '%s\n' "$line"
    fi
  done
}
# The user's own files are read and written as the user, never as root: a symlink or a FIFO
# the user left in their own .ssh directory then reaches only what the user could reach anyway.
read_user_keys() {
  timeout 10 runuser -u "$user" -- cat -- "$home/.ssh/authorized_keys" 2>/dev/null || true
}
write_user_keys() {
  runuser -u "$user" -- sh -c 'umask 077 && mkdir -p -- "$1" && chmod 700 -- "$1" &&
    cat > "$1/authorized_keys.passport" && mv -f -- "$1/authorized_keys.passport" "$1/authorized_keys"' \
    sh "$home/.ssh"
}
"""


class UnsafeScriptValue(ValueError):
    """A value that may not go into a script (``fleet.scripts``) or an authorized_keys line."""


def grant_token(grant_uid: object) -> str:
    token = str(grant_uid)
    if not _GRANT_UID_RE.fullmatch(token):
        raise UnsafeScriptValue("a grant uid is a UUID")
    return token


def grant_key_options(
    *, principal: str, forward_ports: Iterable[object], forward_destinations: Iterable[object] = ()
) -> str:
    """The options of a grant's ``authorized_keys`` lines: certificates for ``principal`` alone,
    and what sshd lets that SSH connection reach, through the portal's proxy or not.

    ``ssh -L`` and ``-D`` reach only the instance itself (the three names the proxy accepts) on
    the account's ports (``AwsAccount.forward_ports``), and to the request's ``forward_destinations``
    beyond it (``AccessRequest.destinations_in_force``, each ``host:port`` in the one spelling of
    ``core.destinations``, an IPv6 host in brackets as sshd wants it); ``-R`` is refused. authorized_keys has
    no "none" for ``permitlisten``: the one listen permission given, port 1 on loopback, is one
    no unprivileged user may bind, so sshd refuses every remote forward. With nothing to reach,
    ``no-port-forwarding`` (without a ``permitopen``, sshd would open anything).

    Defence in depth, not a boundary: the file is the user's, who has a shell, and sshd applies
    neither option to Unix-socket forwards. The boundary is the recording proxy's.
    """
    try:
        principal = validate_principal(principal)
    except InvalidPrincipal as error:
        raise UnsafeScriptValue(str(error)) from None
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
        return f'cert-authority,principals="{principal}",no-port-forwarding'
    targets = [f"{host}:{port}" for port in sorted(ports) for host in FORWARD_HOSTS] + destinations
    opens = ",".join(f'permitopen="{target}"' for target in targets)
    return f'cert-authority,principals="{principal}",{opens},{NO_REMOTE_FORWARDS}'


def authorized_keys(
    *,
    grant_uid: object,
    ca_public_keys: Sequence[str],
    forward_ports: Iterable[object],
    forward_destinations: Iterable[object] = (),
) -> str:
    """One ``cert-authority`` line per trusted CA, limited to certificates for this grant's
    principal and to forwards to the instance's own ``forward_ports`` and the request's
    ``forward_destinations`` (``grant_key_options``)."""
    options = grant_key_options(
        principal=grant_principal(grant_token(grant_uid)),
        forward_ports=forward_ports,
        forward_destinations=forward_destinations,
    )
    lines = []
    for key in ca_public_keys:
        key = " ".join(key.split()[:2])  # drop the comment: only type and blob are needed
        if not _CA_KEY_RE.fullmatch(key):
            raise UnsafeScriptValue("not an OpenSSH public key")
        lines.append(f"{options} {key}\n")
    return "".join(lines)
