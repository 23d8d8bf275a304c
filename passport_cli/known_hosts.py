"""The CLI's known_hosts: the portal's host CA pinned for recorded sessions, no trust on first use.

When an account's CLI sessions are recorded, ssh's peer is the portal's SSH proxy, which
shows a host certificate for the instance id signed by the portal's host CA. The certificate
response (``sessions``, ``host_certificate_authorities``) says so; this module writes one
``@cert-authority i-* <key>`` line per host CA key into ``CONFIG_DIR/known_hosts`` and gives
ssh ``StrictHostKeyChecking=yes`` with that file. Direct sessions keep ``accept-new``.

The host CA lines come from the portal, so they are untrusted text bound for a file ssh
parses: each must be exactly ``<key type> <base64>`` whose blob names that key type, or the
command stops with an error instead of writing it.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from passport_cli.config import config_dir, locked, write_private
from passport_cli.display import printable
from passport_cli.errors import CliError
from passport_cli.names import is_instance_id
from passport_cli.ssh_config import config_path

RECORD, DIRECT = "record", "direct"
# Which hosts the host CA speaks for: instance ids (the certificate names the one instance).
CA_HOST_PATTERN = "i-*"
CA_MARKER = "@cert-authority"
# Key type as the portal may write it -> the type inside the key blob.
_KEY_TYPES = {"ssh-ed25519": "ssh-ed25519", "ssh-rsa": "ssh-rsa", "rsa-sha2-256": "ssh-rsa", "rsa-sha2-512": "ssh-rsa"}
_CA_LINE_RE = re.compile(r"(ssh-ed25519|ssh-rsa|rsa-sha2-256|rsa-sha2-512) ([A-Za-z0-9+/]{20,8192}={0,2})")


def known_hosts_path() -> Path:
    return config_dir() / "known_hosts"


def session_mode(issued: Mapping[str, Any]) -> str:
    """``record`` or ``direct`` from a certificate response; a portal too old to say is direct."""
    mode = issued.get("sessions", DIRECT)
    if mode not in (RECORD, DIRECT):
        raise CliError(f"The portal gave '{printable(mode)}' as the session mode: expected record or direct.")
    return str(mode)


def host_ca_line(line: object) -> str:
    """A host CA public key line from the portal, checked: '<key type> <base64 blob of that type>'.

    Returned as the blob's own key type and the base64, nothing else (no comment, no options).
    """
    text = line if isinstance(line, str) else ""
    match = _CA_LINE_RE.fullmatch(text)
    blob_type = b""
    if match:
        try:
            blob = base64.b64decode(match.group(2), validate=True)
            (length,) = struct.unpack_from(">I", blob, 0)
            blob_type = blob[4 : 4 + length]
        except (binascii.Error, struct.error, ValueError):
            blob_type = b""
    if not match or blob_type != _KEY_TYPES[match.group(1)].encode():
        raise CliError(
            f"The portal gave a host CA key that is not one OpenSSH public key: '{printable(str(line)[:120])}'. "
            "Nothing was written; tell the portal's administrators."
        )
    return f"{blob_type.decode()} {match.group(2)}"


def host_ca_lines(issued: Mapping[str, Any]) -> list[str]:
    """The checked host CA lines of a record-mode certificate response (at least one)."""
    raw = issued.get("host_certificate_authorities")
    if not isinstance(raw, list) or not raw:
        raise CliError("The portal records this account's sessions but gave no host CA to check its proxy with.")
    return [host_ca_line(line) for line in raw]


def _plain_hosts(line: str) -> list[str]:
    """The host names of a known_hosts line without a marker ('host1,[host2]:22 type key')."""
    first = line.split(None, 1)[0] if line.strip() else ""
    return [name.removeprefix("[").split("]", 1)[0].lower() for name in first.split(",")]


def pin_host_cas(ca_lines: Iterable[str], recorded_hosts: Iterable[str]) -> Path:
    """Rewrite the known_hosts file with these host CA lines (already checked by ``host_ca_line``).

    Earlier ``@cert-authority`` lines are replaced (the file is the CLI's own); a key ssh
    learned for a recorded host on a direct session before is dropped, so the host CA alone
    vouches for it. Other learned keys (direct sessions) are kept.
    """
    hosts = {host.lower() for host in recorded_hosts}
    for host in hosts:
        if not is_instance_id(host):
            raise CliError(f"'{printable(host)}' is not an instance id.")
    path = known_hosts_path()
    # Two `passport connect` at once: each rewrites what the other has written, not what it read before.
    with locked(path):
        try:
            existing = path.read_text().splitlines()
        except FileNotFoundError:
            existing = []
        except (OSError, UnicodeDecodeError) as error:
            raise CliError(f"Cannot read {path}: {printable(error)}") from error
        kept = [
            line
            for line in existing
            if not line.lstrip().startswith(CA_MARKER)
            and (line.lstrip().startswith(("#", "@")) or not hosts.intersection(_plain_hosts(line)))
        ]
        pinned = [f"{CA_MARKER} {CA_HOST_PATTERN} {line}" for line in ca_lines]
        write_private(path, "".join(f"{line}\n" for line in [*kept, *pinned]))
    return path


def host_key_options(mode: str) -> list[str]:
    """ssh options (``Keyword=value``) for checking the host: pinned CA when recorded, accept-new when direct."""
    options = [f"UserKnownHostsFile={config_path(known_hosts_path())}"]
    if mode == RECORD:
        # Only the CLI's file decides, and a host key ssh has not seen is refused, never learned.
        return [*options, "GlobalKnownHostsFile=/dev/null", "StrictHostKeyChecking=yes", "UpdateHostKeys=no"]
    return [*options, "StrictHostKeyChecking=accept-new"]
