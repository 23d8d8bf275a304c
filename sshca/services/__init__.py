"""Every change of the CA's state: its keys (``keys``: first use, rotation, retirement) and certificates.

Rotation without lockout: per key type one key is ``active`` (signs) and at most one is
``trusted`` (still published; signs only for hosts not yet given the active key). Hosts are given
every active and trusted key (``ca_trusted_public_keys``), so a certificate signed before a rotation
keeps working until it expires; until a host's refresh lands, a grant's certificates are signed by
a key its lines were written with (``certificates._signing_key``). Only then is the old key retired.

A second CA, the host CA (``host_ca_public_keys``, ``host_certificate_issue``), signs
the portal's host certificates that the CLI pins; its keys never sign people's.
"""

from sshca.services.certificates import (
    CERTIFICATE_EXTENSIONS,
    CLOCK_SKEW,
    KEY_ID_MAX_LENGTH,
    MAX_BACKDATE,
    MAX_VALIDITY,
    MIN_RSA_USER_KEY_BITS,
    SIGNATURE_CA_KEY_TYPE,
    SignatureAlgorithm,
    UserPublicKey,
    certificate_issue,
    certificate_key_id,
    certificates_for_key,
)
from sshca.services.host_certificates import host_ca_public_keys, host_certificate_issue
from sshca.services.keys import (
    CaKeyPurpose,
    CaKeyType,
    ca_authorized_keys_lines,
    ca_key_ensure,
    ca_key_fingerprints,
    ca_keys_ensure,
    ca_retire,
    ca_rotate,
    ca_trusted_public_keys,
)

__all__ = [
    "CERTIFICATE_EXTENSIONS",
    "CLOCK_SKEW",
    "KEY_ID_MAX_LENGTH",
    "MAX_BACKDATE",
    "MAX_VALIDITY",
    "MIN_RSA_USER_KEY_BITS",
    "SIGNATURE_CA_KEY_TYPE",
    "CaKeyPurpose",
    "CaKeyType",
    "SignatureAlgorithm",
    "UserPublicKey",
    "ca_authorized_keys_lines",
    "ca_key_ensure",
    "ca_key_fingerprints",
    "ca_keys_ensure",
    "ca_retire",
    "ca_rotate",
    "ca_trusted_public_keys",
    "certificate_issue",
    "certificate_key_id",
    "certificates_for_key",
    "host_ca_public_keys",
    "host_certificate_issue",
]
