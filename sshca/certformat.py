"""An encoder for OpenSSH user certificates (PROTOCOL.certkeys), over cryptography's primitives.

Why this exists: cryptography's ``SSHCertificateBuilder`` always signs with rsa-sha2-512
when the CA is RSA, and OpenSSH before 7.2 only verifies ``ssh-rsa`` (PKCS#1 v1.5 with
SHA-1) CA signatures. This module writes the same certificate body and signs it with
the algorithm asked for; it can also sign ssh-ed25519 and rsa-sha2-512, which the tests
use to check it against cryptography's parser and against ``ssh-keygen -L``.

Wire format (all lengths big-endian): the certificate key type, a random nonce, the
subject key's public fields, uint64 serial, uint32 type (1 = user), key id, principals
(a string holding strings), uint64 valid after, uint64 valid before, critical options,
extensions (name/data pairs sorted by name), reserved, the CA's public key blob, and
the signature over everything before it.
"""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from sshca.crypto import CaPrivateKey

SSH_CERT_TYPE_USER = 1
_CERT_SUFFIX = "-cert-v01@openssh.com"
_RSA_HASHES: dict[str, type[hashes.SHA1] | type[hashes.SHA512]] = {
    "ssh-rsa": hashes.SHA1,
    "rsa-sha2-512": hashes.SHA512,
}


def _string(value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack(">I", len(raw)) + raw


def _uint64(value: int) -> bytes:
    return struct.pack(">Q", value)


def _uint32(value: int) -> bytes:
    return struct.pack(">I", value)


def _read_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", blob, offset)
    start = offset + 4
    if start + length > len(blob):
        raise ValueError("truncated SSH string")
    return blob[start : start + length], start + length


def public_key_blob(public_key: serialization.SSHPublicKeyTypes) -> bytes:
    """The key in SSH wire form: string key-type, then its public fields."""
    line = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


@dataclass(frozen=True)
class UserCertificateFields:
    """What a user certificate says. Times are Unix seconds."""

    public_key: serialization.SSHCertPublicKeyTypes
    serial: int
    key_id: str
    principals: Sequence[str]
    valid_after: int
    valid_before: int
    extensions: Sequence[str] = ()  # flag extensions: each has empty data
    nonce: bytes = field(default_factory=lambda: os.urandom(32))


def sign_user_certificate(
    fields: UserCertificateFields, *, ca_private_key: CaPrivateKey, signature_algorithm: str
) -> bytes:
    """Encode ``fields`` as a user certificate signed by ``ca_private_key``; returns the blob."""
    subject = public_key_blob(fields.public_key)
    key_type, fields_offset = _read_string(subject, 0)
    principals = b"".join(_string(name) for name in fields.principals)
    # PROTOCOL.certkeys: extensions appear in lexical order of their names, each once.
    extension_names = sorted(set(fields.extensions))
    extensions = b"".join(_string(name) + _string(b"") for name in extension_names)
    body = b"".join(
        [
            _string(key_type.decode() + _CERT_SUFFIX),
            _string(fields.nonce),
            subject[fields_offset:],
            _uint64(fields.serial),
            _uint32(SSH_CERT_TYPE_USER),
            _string(fields.key_id),
            _string(principals),
            _uint64(fields.valid_after),
            _uint64(fields.valid_before),
            _string(b""),  # critical options: none
            _string(extensions),
            _string(b""),  # reserved
            _string(public_key_blob(ca_private_key.public_key())),
        ]
    )
    return body + _string(_signature(ca_private_key, signature_algorithm, body))


def _signature(ca_private_key: CaPrivateKey, signature_algorithm: str, data: bytes) -> bytes:
    """The SSH signature blob: string algorithm name, string raw signature."""
    if isinstance(ca_private_key, ed25519.Ed25519PrivateKey):
        if signature_algorithm != "ssh-ed25519":
            raise ValueError(f"an Ed25519 CA signs with ssh-ed25519, not {signature_algorithm!r}")
        return _string(signature_algorithm) + _string(ca_private_key.sign(data))
    if isinstance(ca_private_key, rsa.RSAPrivateKey):
        hash_type = _RSA_HASHES.get(signature_algorithm)
        if hash_type is None:
            raise ValueError(f"an RSA CA signs with ssh-rsa or rsa-sha2-512, not {signature_algorithm!r}")
        raw = ca_private_key.sign(data, padding.PKCS1v15(), hash_type())
        return _string(signature_algorithm) + _string(raw)
    raise TypeError(f"unsupported CA key {type(ca_private_key).__name__}")


def certificate_line(blob: bytes) -> str:
    """The one-line OpenSSH form of a certificate blob: '<cert type> <base64>'."""
    cert_type, _ = _read_string(blob, 0)
    return f"{cert_type.decode()} {base64.b64encode(blob).decode()}"
