"""Encryption of the CA private keys at rest, and the key helpers around them.

The database holds only ``nonce || AES-256-GCM(ciphertext + tag)``. The AES key is
derived with HKDF from ``settings.PASSPORT_CA_ENCRYPTION_KEY`` (or its ``_FILE``), so a
database dump alone signs nothing. The associated data binds each ciphertext to its row's
key type and fingerprint: a ciphertext copied onto another row does not decrypt.
"""

from __future__ import annotations

import base64
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

CaPrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

_NONCE_BYTES = 12
# Changing the salt or info makes every stored key undecryptable: they name the purpose
# so the same secret, reused elsewhere by mistake, still yields an unrelated AES key.
_HKDF_SALT = b"passport-sshca"
_HKDF_INFO = b"passport sshca ca-private-key aes-256-gcm v1"
RSA_KEY_BITS = 4096
# What sha256_fingerprint writes: 32 bytes of SHA-256 in base64, unpadded.
FINGERPRINT_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


class CaKeyDecryptionError(Exception):
    """A stored CA private key could not be decrypted (wrong key, or tampered with)."""


def _aead(secret: str | None) -> AESGCM:
    secret = settings.PASSPORT_CA_ENCRYPTION_KEY if secret is None else secret
    if not secret:
        raise ImproperlyConfigured("PASSPORT_CA_ENCRYPTION_KEY is empty.")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(secret.encode())
    return AESGCM(key)


def encrypt_private_key(private_key: CaPrivateKey, *, associated_data: bytes, secret: str | None = None) -> bytes:
    """Serialize ``private_key`` (PKCS#8 DER) and encrypt it; returns nonce + ciphertext."""
    plaintext = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + _aead(secret).encrypt(nonce, plaintext, associated_data)


def decrypt_private_key(blob: bytes, *, associated_data: bytes, secret: str | None = None) -> CaPrivateKey:
    """The private key in ``blob``; raises ``CaKeyDecryptionError`` if the key or data is wrong."""
    blob = bytes(blob)  # PostgreSQL hands BinaryField values back as memoryview
    nonce, ciphertext = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
    try:
        plaintext = _aead(secret).decrypt(nonce, ciphertext, associated_data)
    except InvalidTag:
        # No detail from the library: there is none, and the blob must not reach a log.
        raise CaKeyDecryptionError(
            "The CA private key cannot be decrypted: PASSPORT_CA_ENCRYPTION_KEY is not the key it was "
            "encrypted with, or the stored key was altered."
        ) from None
    private_key = serialization.load_der_private_key(plaintext, password=None)
    if not isinstance(private_key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise CaKeyDecryptionError(f"The stored CA key is a {type(private_key).__name__}, not Ed25519 or RSA.")
    return private_key


def generate_private_key(key_type: str) -> CaPrivateKey:
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    raise ValueError(f"unknown CA key type {key_type!r}")


def public_key_line(public_key: ed25519.Ed25519PublicKey | rsa.RSAPublicKey) -> str:
    """The OpenSSH one-line form, without a comment: 'ssh-ed25519 AAAA...'."""
    return public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def sha256_fingerprint(public_key: serialization.SSHPublicKeyTypes) -> str:
    """'SHA256:<base64 without padding>', the form ``ssh-keygen -l`` and sshd's log use."""
    digest = serialization.ssh_key_fingerprint(public_key, hashes.SHA256())
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
