"""The workstation's own key pairs (the private half never leaves) and the certificates the portal signs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from passport_cli.config import config_dir, ensure_private_dir, write_private
from passport_cli.errors import CliError
from passport_cli.executables import which

KEY_TYPES = ("ed25519", "rsa")


def keys_dir() -> Path:
    return ensure_private_dir(config_dir() / "keys")


def ensure_key(key_type: str) -> tuple[Path, str]:
    """The key pair for ``key_type`` (created once, mode 0600); returns its path and public key line."""
    if key_type not in KEY_TYPES:
        raise CliError(f"Unknown key type {key_type!r}: use ed25519 or rsa.")
    path = keys_dir() / f"id_{key_type}"
    public = path.with_name(f"{path.name}.pub")
    if not path.exists() or not public.exists():
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
    path.chmod(0o600)
    return path, public.read_text().strip()


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
