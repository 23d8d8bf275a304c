"""Ed25519 signatures on the CLI's published wheels, checked before `--self-update` installs one.

Whoever publishes the CLI signs each wheel with a release key that the portal never holds
(``manage.py build_cli_wheel --signing-key``); the portal only serves the signature beside the
wheel. The CLI accepts a signature only from the keys built into it (``release_keys``), so a
portal, or whoever controls it, can offer a wheel but cannot get one installed that the release
key did not sign.

The signed message (``signed_message``) is a fixed domain-separation line followed by the
distribution, the version, the file name and the wheel's SHA-256, one ``name=value`` line each.
Every value is checked against a strict pattern first (none can hold a newline or ``=``), so the
encoding is unambiguous: a signature on one version's wheel does not verify for another version
or file, and no signature made for another purpose can pass for a release signature.

Shared by the portal (which builds the message to sign) and the CLI (which checks it); only the
check needs the ``cryptography`` package, imported when used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from passport_cli.errors import CliError

DISTRIBUTION = "passport-portal"  # pyproject.toml's name: the CLI is packaged as this
SIGNATURE_FORMAT = "passport-cli-release-signature/v1"
# What makes this signature mean "a passport CLI release" and nothing else.
DOMAIN_LINE = b"passport-cli-release-signature/v1\n"
# A version as a wheel's name may carry it: what the index may list, and what a hint may quote.
VERSION_PATTERN = r"[0-9][0-9A-Za-z.!+]{0,63}"
VERSION_RE = re.compile(VERSION_PATTERN)
WHEEL_NAME_RE = re.compile(rf"passport_portal-(?P<version>{VERSION_PATTERN})-py3-none-any\.whl")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
FINGERPRINT_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
SIGNATURE_BYTES = 64


class SignatureRefused(CliError):
    """The wheel's signature is missing, from an untrusted key, or wrong: nothing may be installed."""


def wheel_version(filename: str) -> str | None:
    """The version part of a CLI wheel's file name, or None for any other name."""
    match = WHEEL_NAME_RE.fullmatch(filename)
    return match["version"] if match else None


def signed_message(*, filename: str, sha256: str) -> bytes:
    """The exact bytes a release key signs for the wheel ``filename`` whose SHA-256 is ``sha256`` (hex)."""
    version = wheel_version(filename)
    if version is None:
        raise ValueError(f"{filename!r} is not a passport CLI wheel name")
    if not SHA256_RE.fullmatch(sha256):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    fields = f"distribution={DISTRIBUTION}\nversion={version}\nfilename={filename}\nsha256={sha256}\n"
    return DOMAIN_LINE + fields.encode("ascii")


def _openssh_blob(public_line: str) -> bytes:
    parts = public_line.split()
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        raise ValueError("not an ssh-ed25519 public key line")
    try:
        return base64.b64decode(parts[1], validate=True)
    except binascii.Error as error:
        raise ValueError("the key's base64 is malformed") from error


def key_fingerprint(public_line: str) -> str:
    """``SHA256:…`` as ``ssh-keygen -l`` prints it, so an operator can compare keys by eye."""
    digest = hashlib.sha256(_openssh_blob(public_line)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class ReleaseSignature:
    key: str  # the signing key's fingerprint: which trusted key to check with
    signature: str  # base64 of the 64-byte Ed25519 signature of ``signed_message``

    def as_dict(self) -> dict[str, str]:
        return {"format": SIGNATURE_FORMAT, "key": self.key, "signature": self.signature}

    @classmethod
    def from_dict(cls, value: Any) -> ReleaseSignature | None:
        """A well-formed signature object, or None for anything else (treated as unsigned)."""
        if not isinstance(value, dict) or value.get("format") != SIGNATURE_FORMAT:
            return None
        key, signature = value.get("key"), value.get("signature")
        if not isinstance(key, str) or not FINGERPRINT_RE.fullmatch(key) or not isinstance(signature, str):
            return None
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return None
        return cls(key=key, signature=signature) if len(raw) == SIGNATURE_BYTES else None


def verify_release(*, filename: str, sha256: str, signature: ReleaseSignature | None, trusted: Sequence[str]) -> str:
    """Check ``signature`` on the wheel ``filename`` with digest ``sha256``; return the signing key's fingerprint.

    ``trusted`` is ``release_keys.RELEASE_KEYS`` in use; tests pass their own. Raises
    SignatureRefused with the reason when the wheel must not be installed.
    """
    try:
        from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_ssh_public_key
    except ImportError as error:
        raise SignatureRefused(
            "checking a release signature needs the 'cryptography' package: pip install 'cryptography>=42'"
        ) from error
    if not trusted:
        raise SignatureRefused(
            "this passport was built without release keys, so it cannot check any update; "
            "install the new version from a source you trust"
        )
    if signature is None:
        raise SignatureRefused(f"the portal gives no release signature for {filename}")
    keys: dict[str, Ed25519PublicKey] = {}
    for line in trusted:
        try:
            public_key = load_ssh_public_key(line.encode("ascii"))
            fingerprint = key_fingerprint(line)
        except (ValueError, UnsupportedAlgorithm) as error:
            raise SignatureRefused(f"a release key built into this passport is malformed: {error}") from error
        if not isinstance(public_key, Ed25519PublicKey):
            raise SignatureRefused(f"release key {fingerprint} built into this passport is not an Ed25519 key")
        keys[fingerprint] = public_key
    if signature.key not in keys:
        raise SignatureRefused(
            f"{filename} is signed by key {signature.key}, which this passport does not trust "
            f"(it trusts {', '.join(sorted(keys))})"
        )
    try:
        message = signed_message(filename=filename, sha256=sha256)
        keys[signature.key].verify(base64.b64decode(signature.signature, validate=True), message)
    except (InvalidSignature, ValueError) as error:
        raise SignatureRefused(
            f"the signature on {filename} does not verify with key {signature.key}: the wheel, its version or "
            "its digest is not what the release key signed"
        ) from error
    return signature.key
