"""Sealing short secrets for storage (Windows passwords): AES-256-GCM under a key per purpose.

The key is derived with HKDF from ``settings.PASSPORT_CA_ENCRYPTION_KEY``; the salt is the
one the CA keys use, and must never change, or every stored secret becomes undecryptable.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_NONCE_BYTES = 12
_HKDF_SALT = b"passport-sshca"


class SecretDecryptionError(Exception):
    """A sealed secret could not be opened (wrong key, wrong purpose, or tampered with)."""


def _purpose_aead(purpose: str) -> AESGCM:
    secret = settings.PASSPORT_CA_ENCRYPTION_KEY
    if not secret:
        raise ImproperlyConfigured("PASSPORT_CA_ENCRYPTION_KEY is empty.")
    info = b"passport secret " + purpose.encode() + b" aes-256-gcm v1"
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=info).derive(secret.encode()))


def seal(plaintext: str, *, purpose: str, associated_data: bytes) -> bytes:
    """Encrypt a short secret (a Windows password) for storage: nonce + AES-256-GCM ciphertext.

    The purpose names its own derived key, so a sealed password is no CA key and vice versa.
    """
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + _purpose_aead(purpose).encrypt(nonce, plaintext.encode(), associated_data)


def unseal(blob: bytes, *, purpose: str, associated_data: bytes) -> str:
    blob = bytes(blob)
    try:
        plaintext = _purpose_aead(purpose).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated_data)
    except InvalidTag:
        raise SecretDecryptionError("A stored secret cannot be decrypted with PASSPORT_CA_ENCRYPTION_KEY.") from None
    return plaintext.decode()
