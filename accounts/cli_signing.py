"""The release key that signs the CLI's wheels: loading it, signing with it, making a new one.

Used by ``manage.py build_cli_wheel`` only. The key is meant to live apart from the portal (on
the machine or the medium that publishes releases): the portal serves signatures, the CLI checks
them against the public keys built into it (``passport_cli.release_keys``), so a portal that
never holds the key cannot publish a wheel any CLI will install.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from passport_cli.release_signature import ReleaseSignature, key_fingerprint, signed_message

_OPENSSH_PRIVATE_HEADER = b"-----BEGIN OPENSSH PRIVATE KEY-----"


class SigningKeyError(Exception):
    pass


def signing_key_load(*, path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM (PKCS#8, as ``openssl genpkey``) or OpenSSH (``ssh-keygen``) file."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SigningKeyError(f"Cannot read the signing key {path}: {error.strerror or error}") from error
    key: object
    try:
        if _OPENSSH_PRIVATE_HEADER in data:
            key = serialization.load_ssh_private_key(data, password=passphrase)
        else:
            key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as error:
        # TypeError: a passphrase was given for a plain key, or none for an encrypted one.
        raise SigningKeyError(f"{path} is not a usable private key: {error}") from error
    except UnsupportedAlgorithm as error:  # also: bcrypt missing for an encrypted OpenSSH key
        raise SigningKeyError(
            f"{path} cannot be loaded ({error}); an encrypted key can be a PKCS#8 PEM: "
            "openssl genpkey -algorithm ed25519 -aes-256-cbc"
        ) from error
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 key: release signatures are Ed25519.")
    return key


def signing_key_public_line(key: Ed25519PrivateKey, comment: str = "passport-cli-release") -> str:
    """The OpenSSH public line that goes into ``passport_cli/release_keys.py``."""
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{public.decode('ascii')} {comment}".strip()


def signing_key_fingerprint(key: Ed25519PrivateKey) -> str:
    return key_fingerprint(signing_key_public_line(key))


def release_sign(*, key: Ed25519PrivateKey, filename: str, sha256: str) -> ReleaseSignature:
    signature = key.sign(signed_message(filename=filename, sha256=sha256))
    return ReleaseSignature(key=signing_key_fingerprint(key), signature=base64.b64encode(signature).decode("ascii"))


def signing_key_generate(*, path: Path) -> Ed25519PrivateKey:
    """A new key in ``path`` (OpenSSH format, 0600, never over an existing file) and its public line in ``path``.pub."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public_path = path.with_name(path.name + ".pub")
    for target in (path, public_path):
        if target.exists() or target.is_symlink():
            raise SigningKeyError(f"{target} already exists: not overwriting a key.")
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise SigningKeyError(f"Cannot create {path}: {error.strerror or error}") from error
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private)
    public_path.write_text(signing_key_public_line(key) + "\n")
    return key
