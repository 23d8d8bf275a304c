# With the cryptography package: exit 0 when the signature verifies, 1 when it does not.
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def read(name):
    with open(sys.argv[1] + "/" + name, "rb") as handle:
        return handle.read()


try:
    Ed25519PublicKey.from_public_bytes(read("key.raw")).verify(read("signature"), read("message"))
except InvalidSignature:
    sys.exit(1)
