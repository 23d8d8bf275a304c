"""The public keys whose signature `passport version --self-update` accepts on a wheel.

Each is an OpenSSH Ed25519 public key line (``ssh-ed25519 AAAA… comment``). The private halves
are held by whoever publishes the CLI, apart from the portal: a portal serves wheels and their
signatures but cannot sign one, so a compromised portal cannot make this CLI install its code.

To publish your own builds, make a key pair on the release machine
(``manage.py build_cli_wheel --generate-signing-key PATH``, or ``ssh-keygen -t ed25519``), add
its public line here, and build with ``--signing-key PATH``. A CLI trusts the keys it was built
with, so to change keys, first publish a version that lists both the old and the new key,
signed with the old one. With no key here, this CLI refuses every update (it cannot check one).
"""

from __future__ import annotations

RELEASE_KEYS: tuple[str, ...] = ()
