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
LINUX_KEEP_LINES = r"""
keep_grant_lines() {
  local line g pattern
  pattern='^cert-authority,principals="grant-[0-9a-f-]{36}"'
  # The forward options of grant_key_options; lines of earlier versions have none.
  pattern+='(,permitopen="(localhost|127\.0\.0\.1|\[::1\]):[0-9]{1,5}")*'
  pattern+='(,permitlisten="localhost:1"|,no-port-forwarding)? '
  pattern+='(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+={0,3}$'
  { grep -E "$pattern" || true; } |
  while IFS= read -r line; do
    g=${line#cert-authority,principals=\"grant-}
    g=${g%%\"*}
    [ "$g" = "$1" ] && continue
    [ -e "/var/lib/passport/grants/$g" ] || continue
    [ -e "/var/lib/passport/removed/$g" ] && continue
    printf '%s\n' "$line"
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


def grant_key_options(*, principal: str, forward_ports: Iterable[object]) -> str:
    """The options of a grant's ``authorized_keys`` lines: certificates for ``principal`` alone,
    and what sshd lets that SSH connection reach, through the portal's proxy or not.

    ``ssh -L`` and ``-D`` reach only the instance itself (the three names the proxy accepts) on
    the account's ports (``AwsAccount.forward_ports``); ``-R`` is refused. authorized_keys has
    no "none" for ``permitlisten``: the one listen permission given, port 1 on loopback, is one
    no unprivileged user may bind, so sshd refuses every remote forward. With no port at all,
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
    if not ports:
        return f'cert-authority,principals="{principal}",no-port-forwarding'
    opens = ",".join(f'permitopen="{host}:{port}"' for port in sorted(ports) for host in FORWARD_HOSTS)
    return f'cert-authority,principals="{principal}",{opens},{NO_REMOTE_FORWARDS}'


def authorized_keys(*, grant_uid: object, ca_public_keys: Sequence[str], forward_ports: Iterable[object]) -> str:
    """One ``cert-authority`` line per trusted CA, limited to certificates for this grant's
    principal and to forwards to the instance's own ``forward_ports`` (``grant_key_options``)."""
    options = grant_key_options(principal=grant_principal(grant_token(grant_uid)), forward_ports=forward_ports)
    lines = []
    for key in ca_public_keys:
        key = " ".join(key.split()[:2])  # drop the comment: only type and blob are needed
        if not _CA_KEY_RE.fullmatch(key):
            raise UnsafeScriptValue("not an OpenSSH public key")
        lines.append(f"{options} {key}\n")
    return "".join(lines)
