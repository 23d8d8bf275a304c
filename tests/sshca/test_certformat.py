"""Our certificate encoder, checked against cryptography's builder, its parser and ssh-keygen."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from sshca.certformat import UserCertificateFields, certificate_line, sign_user_certificate
from sshca.crypto import CaPrivateKey
from tests.sshca.conftest import ALICE, UserKeys, keygen_list

VALID_AFTER, VALID_BEFORE = 1_790_000_000, 1_790_003_600


@pytest.fixture(scope="module")
def ca_keys() -> dict[str, CaPrivateKey]:
    return {
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


def _read_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", blob, offset)
    return blob[offset + 4 : offset + 4 + length], offset + 4 + length


def _split_signature(blob: bytes, ca_private_key: CaPrivateKey) -> tuple[bytes, bytes, bytes]:
    """(signed body, algorithm, raw signature): the signature blob is the last string."""
    raw_length = 64 if isinstance(ca_private_key, ed25519.Ed25519PrivateKey) else ca_private_key.key_size // 8
    for algorithm in (b"ssh-ed25519", b"rsa-sha2-512", b"ssh-rsa"):
        signature_blob = struct.pack(">I", len(algorithm)) + algorithm + struct.pack(">I", raw_length)
        start = len(blob) - raw_length - len(signature_blob) - 4
        if blob[start + 4 : start + 4 + len(signature_blob)] == signature_blob:
            return blob[:start], algorithm, blob[-raw_length:]
    raise AssertionError("no signature found")


def _fields(public_key: serialization.SSHCertPublicKeyTypes, nonce: bytes | None = None) -> UserCertificateFields:
    extra = {"nonce": nonce} if nonce is not None else {}
    return UserCertificateFields(
        public_key=public_key,
        serial=4242,
        key_id="request 42 alice",
        principals=[ALICE],
        valid_after=VALID_AFTER,
        valid_before=VALID_BEFORE,
        extensions=["permit-pty", "permit-port-forwarding"],
        **extra,
    )


@pytest.mark.parametrize(("ca_type", "algorithm"), [("ed25519", "ssh-ed25519"), ("rsa", "rsa-sha2-512")])
@pytest.mark.parametrize("user_key_type", ["ed25519", "rsa"])
def test_byte_for_byte_what_cryptography_builds(
    ca_keys: dict[str, CaPrivateKey], user_keys: UserKeys, ca_type: str, algorithm: str, user_key_type: str
) -> None:
    """Ed25519 and RSA PKCS#1 v1.5 signatures are deterministic: with the builder's nonce,
    our encoder must produce exactly the builder's certificate."""
    ca = ca_keys[ca_type]
    user_public = getattr(user_keys, user_key_type).private_key.public_key()
    builder = (
        serialization.SSHCertificateBuilder()
        .public_key(user_public)
        .serial(4242)
        .type(serialization.SSHCertificateType.USER)
        .key_id(b"request 42 alice")
        .valid_principals([ALICE.encode()])
        .valid_after(VALID_AFTER)
        .valid_before(VALID_BEFORE)
        .add_extension(b"permit-pty", b"")
        .add_extension(b"permit-port-forwarding", b"")
    )
    reference = base64.b64decode(builder.sign(ca).public_bytes().split()[1])
    _, offset = _read_string(reference, 0)
    nonce, _ = _read_string(reference, offset)

    ours = sign_user_certificate(_fields(user_public, nonce), ca_private_key=ca, signature_algorithm=algorithm)

    assert ours == reference


@pytest.mark.parametrize(
    ("ca_type", "algorithm"), [("ed25519", "ssh-ed25519"), ("rsa", "rsa-sha2-512"), ("rsa", "ssh-rsa")]
)
def test_ssh_keygen_and_cryptography_accept_our_certificates(
    ca_keys: dict[str, CaPrivateKey], user_keys: UserKeys, tmp_path: Path, ca_type: str, algorithm: str
) -> None:
    blob = sign_user_certificate(
        _fields(user_keys.rsa.private_key.public_key()), ca_private_key=ca_keys[ca_type], signature_algorithm=algorithm
    )
    line = certificate_line(blob)

    listing = keygen_list(line, tmp_path)
    parsed = serialization.load_ssh_public_identity(line.encode())

    assert listing.signing_algorithm == algorithm
    assert listing.fields["Serial"] == "4242"
    assert listing.lists["Principals"] == [ALICE]
    assert listing.lists["Extensions"] == ["permit-port-forwarding", "permit-pty"]  # sorted, as the spec wants
    assert isinstance(parsed, serialization.SSHCertificate)
    parsed.verify_cert_signature()
    assert parsed.extensions == {b"permit-port-forwarding": b"", b"permit-pty": b""}


def test_the_ssh_rsa_signature_is_pkcs1v15_sha1_over_the_body(
    ca_keys: dict[str, CaPrivateKey], user_keys: UserKeys
) -> None:
    ca = ca_keys["rsa"]
    assert isinstance(ca, rsa.RSAPrivateKey)
    blob = sign_user_certificate(
        _fields(user_keys.ed25519.private_key.public_key()), ca_private_key=ca, signature_algorithm="ssh-rsa"
    )

    body, algorithm, signature = _split_signature(blob, ca)

    assert algorithm == b"ssh-rsa"
    ca.public_key().verify(signature, body, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - what ssh-rsa is
    with pytest.raises(InvalidSignature):
        ca.public_key().verify(signature, body, padding.PKCS1v15(), hashes.SHA512())


@pytest.mark.parametrize("algorithm", ["ssh-rsa", "ssh-ed25519"])
def test_a_tampered_certificate_is_rejected(
    ca_keys: dict[str, CaPrivateKey], user_keys: UserKeys, tmp_path: Path, algorithm: str
) -> None:
    ca = ca_keys["rsa" if algorithm == "ssh-rsa" else "ed25519"]
    blob = sign_user_certificate(
        _fields(user_keys.ed25519.private_key.public_key()), ca_private_key=ca, signature_algorithm=algorithm
    )
    # Same length, another principal: what an attacker would try.
    forged = certificate_line(blob.replace(ALICE.encode(), b"rs-rootroot"))

    with pytest.raises(AssertionError, match="ssh-keygen -L refused"):
        keygen_list(forged, tmp_path)
    parsed = serialization.load_ssh_public_identity(forged.encode())
    assert isinstance(parsed, serialization.SSHCertificate)
    with pytest.raises(InvalidSignature):
        parsed.verify_cert_signature()


@pytest.mark.parametrize(
    ("ca_type", "algorithm"),
    [("ed25519", "ssh-rsa"), ("ed25519", "rsa-sha2-512"), ("rsa", "ssh-ed25519"), ("rsa", "rsa-sha2-256")],
)
def test_an_algorithm_the_ca_cannot_make_is_refused(
    ca_keys: dict[str, CaPrivateKey], user_keys: UserKeys, ca_type: str, algorithm: str
) -> None:
    with pytest.raises(ValueError, match="signs with"):
        sign_user_certificate(
            _fields(user_keys.ed25519.private_key.public_key()),
            ca_private_key=ca_keys[ca_type],
            signature_algorithm=algorithm,
        )


def test_each_certificate_gets_a_fresh_nonce(ca_keys: dict[str, CaPrivateKey], user_keys: UserKeys) -> None:
    public = user_keys.ed25519.private_key.public_key()
    first = sign_user_certificate(_fields(public), ca_private_key=ca_keys["ed25519"], signature_algorithm="ssh-ed25519")
    second = sign_user_certificate(
        _fields(public), ca_private_key=ca_keys["ed25519"], signature_algorithm="ssh-ed25519"
    )

    assert _read_string(first, _read_string(first, 0)[1])[0] != _read_string(second, _read_string(second, 0)[1])[0]
