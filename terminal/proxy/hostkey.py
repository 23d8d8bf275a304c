"""The proxy's host key: one Ed25519 key per web process, shown with a host certificate per instance.

The engineer's ssh connects to an instance id and trusts the Passport host CA for it
(``@cert-authority`` in the CLI's known_hosts), so the certificate's one principal is the grant's
instance id and it is signed by the host CA (sshca.services.host_certificate_issue). A
certificate is reused for a few minutes per instance: not one signature (and one
IssuedCertificate row) per connection. The key never leaves memory.
"""

from __future__ import annotations

import threading
import time

import asyncssh

from sshca.services import host_certificate_issue

# A certificate is used for new connections this long, and valid a good while longer (a
# connection checks it only at its start).
CACHE_SECONDS = 300
VALID_SECONDS = 3600

_lock = threading.Lock()
_key: asyncssh.SSHKey | None = None
_certificates: dict[str, tuple[float, asyncssh.SSHCertificate]] = {}


def process_host_key() -> asyncssh.SSHKey:
    """This web process's host key, made on first use."""
    global _key
    with _lock:
        if _key is None:
            _key = asyncssh.generate_private_key("ssh-ed25519", comment="passport-proxy-host-key")
        return _key


def host_certificate(instance_id: str) -> asyncssh.SSHCertificate:
    """A host certificate for this process's key naming ``instance_id`` (ORM: call from a sync thread)."""
    now = time.monotonic()
    with _lock:
        cached = _certificates.get(instance_id)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
    key = process_host_key()
    line = host_certificate_issue(
        public_key=key.export_public_key().decode().strip(),
        principals=[instance_id],
        valid_seconds=VALID_SECONDS,
        key_id=f"passport proxy host {instance_id}",
    )
    certificate = asyncssh.import_certificate(line)
    with _lock:
        for stale in [name for name, (at, _) in _certificates.items() if now - at >= CACHE_SECONDS]:
            del _certificates[stale]
        _certificates[instance_id] = (now, certificate)
    return certificate
