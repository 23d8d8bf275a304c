"""Domain errors of the CA. Messages are safe to show: they never contain key material."""

from __future__ import annotations

from sshca.crypto import CaKeyDecryptionError

__all__ = ["CaKeyDecryptionError", "CaKeyStateError", "CertificateRequestError"]


class CaKeyStateError(Exception):
    """A CA key transition that is not allowed from the key's current state."""


class CertificateRequestError(ValueError):
    """A certificate was asked for with a bad key, principal, key id or validity."""
