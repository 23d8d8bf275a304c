"""The release signature check `--self-update` relies on, without a portal: what is signed and what is refused."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from accounts import cli_signing
from passport_cli.release_signature import (
    ReleaseSignature,
    SignatureRefused,
    key_fingerprint,
    signed_message,
    verify_release,
)

WHEEL_A = "passport_portal-1.2.0-py3-none-any.whl"
WHEEL_B = "passport_portal-1.3.0-py3-none-any.whl"
DIGEST_A = hashlib.sha256(b"wheel a").hexdigest()
DIGEST_B = hashlib.sha256(b"wheel b").hexdigest()


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _trusting(key: Ed25519PrivateKey) -> tuple[str, ...]:
    return (cli_signing.signing_key_public_line(key),)


def test_the_signed_message_is_domain_separated_and_names_file_version_and_digest() -> None:
    assert signed_message(filename=WHEEL_A, sha256=DIGEST_A) == (
        b"passport-cli-release-signature/v1\n"
        b"distribution=passport-portal\n"
        b"version=1.2.0\n"
        b"filename=passport_portal-1.2.0-py3-none-any.whl\n"
        b"sha256=" + DIGEST_A.encode() + b"\n"
    )
    for filename, sha256 in [
        ("passport_portal-1.2.0-py3-none-any.whl\nsha256=x", DIGEST_A),
        ("other-1.2.0-py3-none-any.whl", DIGEST_A),
        (WHEEL_A, DIGEST_A.upper()),
        (WHEEL_A, DIGEST_A[:-1]),
        (WHEEL_A, DIGEST_A + "\n"),
    ]:
        with pytest.raises(ValueError):
            signed_message(filename=filename, sha256=sha256)


def test_a_signature_verifies_only_for_its_own_file_and_digest(key: Ed25519PrivateKey) -> None:
    signature = cli_signing.release_sign(key=key, filename=WHEEL_A, sha256=DIGEST_A)
    trusted = _trusting(key)
    assert verify_release(filename=WHEEL_A, sha256=DIGEST_A, signature=signature, trusted=trusted) == signature.key
    assert signature.key == key_fingerprint(trusted[0]) and signature.key.startswith("SHA256:")
    for filename, sha256 in [(WHEEL_B, DIGEST_A), (WHEEL_A, DIGEST_B), (WHEEL_B, DIGEST_B)]:
        with pytest.raises(SignatureRefused, match="does not verify"):
            verify_release(filename=filename, sha256=sha256, signature=signature, trusted=trusted)


def test_unsigned_untrusted_and_keyless_are_refused(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    with pytest.raises(SignatureRefused, match="no release signature"):
        verify_release(filename=WHEEL_A, sha256=DIGEST_A, signature=None, trusted=_trusting(key))
    foreign = cli_signing.release_sign(key=other, filename=WHEEL_A, sha256=DIGEST_A)
    with pytest.raises(SignatureRefused, match="does not trust"):
        verify_release(filename=WHEEL_A, sha256=DIGEST_A, signature=foreign, trusted=_trusting(key))
    # Naming the trusted key does not make another key's signature good.
    claimed = ReleaseSignature(key=key_fingerprint(_trusting(key)[0]), signature=foreign.signature)
    with pytest.raises(SignatureRefused, match="does not verify"):
        verify_release(filename=WHEEL_A, sha256=DIGEST_A, signature=claimed, trusted=_trusting(key))
    # A CLI built without keys checks nothing, so installs nothing.
    own = cli_signing.release_sign(key=key, filename=WHEEL_A, sha256=DIGEST_A)
    with pytest.raises(SignatureRefused, match="without release keys"):
        verify_release(filename=WHEEL_A, sha256=DIGEST_A, signature=own, trusted=())
    # Several trusted keys (a rotation): either verifies its own signatures.
    assert verify_release(
        filename=WHEEL_A, sha256=DIGEST_A, signature=foreign, trusted=(*_trusting(key), *_trusting(other))
    ) == key_fingerprint(cli_signing.signing_key_public_line(other))


def test_a_signature_of_the_bare_message_or_over_another_domain_is_refused(key: Ed25519PrivateKey) -> None:
    """The domain line is part of what is signed: a signature made without it never passes."""
    bare = signed_message(filename=WHEEL_A, sha256=DIGEST_A).split(b"\n", 1)[1]
    fingerprint = key_fingerprint(cli_signing.signing_key_public_line(key))
    for message in (bare, b"ssh-login\n" + bare, DIGEST_A.encode()):
        signature = ReleaseSignature(key=fingerprint, signature=base64.b64encode(key.sign(message)).decode())
        with pytest.raises(SignatureRefused, match="does not verify"):
            verify_release(filename=WHEEL_A, sha256=DIGEST_A, signature=signature, trusted=_trusting(key))


@pytest.mark.parametrize(
    "value",
    [
        None,
        "x",
        {},
        {"format": "passport-cli-release-signature/v2", "key": "SHA256:" + "A" * 43, "signature": "A" * 88},
        {"format": "passport-cli-release-signature/v1", "key": "MD5:aa", "signature": "A" * 88},
        {"format": "passport-cli-release-signature/v1", "key": "SHA256:" + "A" * 43, "signature": "AAAA"},
        {"format": "passport-cli-release-signature/v1", "key": "SHA256:" + "A" * 43, "signature": "not base64!"},
        {"format": "passport-cli-release-signature/v1", "key": "SHA256:" + "A" * 43, "signature": 5},
    ],
)
def test_a_malformed_signature_object_counts_as_none(value: object) -> None:
    assert ReleaseSignature.from_dict(value) is None


def test_a_malformed_built_in_key_is_a_refusal_not_a_crash(key: Ed25519PrivateKey) -> None:
    signature = cli_signing.release_sign(key=key, filename=WHEEL_A, sha256=DIGEST_A)
    with pytest.raises(SignatureRefused, match="malformed"):
        verify_release(filename=WHEEL_A, sha256=DIGEST_A, signature=signature, trusted=("ssh-ed25519 !!!",))
