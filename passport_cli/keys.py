"""The workstation's own key pairs (the private half never leaves) and the certificates the portal signs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from passport_cli.config import check_private, config_dir, ensure_private_dir, write_private
from passport_cli.display import printable
from passport_cli.errors import CliError
from passport_cli.executables import which

KEY_TYPES = ("ed25519", "rsa")


def keys_dir() -> Path:
    return ensure_private_dir(config_dir() / "keys")


def ensure_key(key_type: str) -> tuple[Path, str]:
    """The key pair for ``key_type`` (created once, mode 0600); returns its path and public key line.

    Only a pair the portal may certify: the private key a file of this user's (never a link to one),
    the public key its own public half (``_public_half``); a CliError naming the file otherwise."""
    if key_type not in KEY_TYPES:
        raise CliError(f"Unknown key type {key_type!r}: use ed25519 or rsa.")
    path = keys_dir() / f"id_{key_type}"
    public = path.with_name(f"{path.name}.pub")
    if not os.path.lexists(path) or not os.path.lexists(public):  # a link is not replaced: refused below
        keygen = which("ssh-keygen")
        if keygen is None:
            raise CliError("ssh-keygen was not found: install OpenSSH (the client).")
        for stale in (path, public):
            stale.unlink(missing_ok=True)
        extra = ["-b", "3072"] if key_type == "rsa" else []
        result = subprocess.run(
            [keygen, "-q", "-t", key_type, *extra, "-N", "", "-C", "passport-cli", "-f", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise CliError(f"ssh-keygen failed: {result.stderr.strip()}")
    private_text = _read_own(path, private=True)
    line = _read_own(public, private=False).decode(errors="replace").strip()
    if line.split()[:2] != _public_half(path, private_text).split()[:2]:
        raise CliError(
            f"{printable(public)} is not the public key of {printable(path)}: the portal would certify a key "
            "that is not this one. Remove both (passport makes a new pair) if you did not put them there."
        )
    return path, line


def _read_own(path: Path, *, private: bool) -> bytes:
    """The bytes of ``path``, opened without following a link, once it is a file of this user's
    (``check_private``); a private key is made 0600 through the file opened (a chmod follows links)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as error:
        check_private(path, directory=False)  # a link (ELOOP) or not there: its own message
        raise CliError(f"Cannot read {printable(path)}: {printable(error.strerror or error)}") from error
    with os.fdopen(fd, "rb") as handle:
        check_private(path, directory=False)  # keys/ is this user's alone: the file opened
        if private and hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        elif private:
            path.chmod(0o600)  # Windows (no fchmod before Python 3.13): check_private refused a link
        return handle.read()


def _public_half(path: Path, private_text: bytes) -> str:
    """The OpenSSH public key line of the private key ``private_text`` (read from ``path``)."""
    from cryptography.exceptions import UnsupportedAlgorithm  # only when a key is used
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_ssh_private_key(private_text, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise CliError(
            f"{printable(path)} is not an unencrypted OpenSSH private key ({printable(error)}): remove it and "
            f"{printable(path.name)}.pub, and passport makes a new pair."
        ) from error
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def write_certificates(name: str, certificates: list[str]) -> list[Path]:
    """Certificates in the order they are to be tried (for RSA: SHA-2 first, then SHA-1)."""
    directory = ensure_private_dir(config_dir() / "certs")
    paths = []
    for index, line in enumerate(certificates):
        path = directory / f"{name}-cert-{index}.pub"
        write_private(path, line.strip() + "\n")
        paths.append(path)
    for stale in directory.glob(f"{name}-cert-*.pub"):
        if stale not in paths:
            stale.unlink(missing_ok=True)
    return paths
