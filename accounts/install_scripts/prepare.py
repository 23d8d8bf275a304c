# Stdlib only: check the release signature file's form and its key against the keys this
# installer trusts, and write what the Ed25519 check needs (the signed message, the raw
# signature, the key as raw bytes and as PEM) into a directory. Exit 3 with the reason otherwise.
import base64
import binascii
import hashlib
import json
import sys

wheel, signature_file, filename, version, out = sys.argv[1:6]
# PowerShell 5 drops an empty last argument: no keys.
trusted_text = sys.argv[6] if len(sys.argv) > 6 else ""


def refuse(reason):
    sys.stderr.write("passport install: refused: " + reason + "\n")
    sys.exit(3)


trusted = {}
for line in trusted_text.splitlines():
    if line.strip():
        fingerprint, raw = line.split()
        trusted[fingerprint] = base64.b64decode(raw)
if not trusted:
    refuse("this portal trusts no release key, so no download can be checked")
try:
    with open(signature_file, encoding="utf-8") as text:
        signature = json.load(text)
except (OSError, ValueError):
    refuse(filename + ".sig is not a release signature")
if not isinstance(signature, dict) or signature.get("format") != "passport-cli-release-signature/v1":
    refuse(filename + ".sig is not a passport-cli-release-signature/v1 file")
key = signature.get("key")
try:
    raw_signature = base64.b64decode(str(signature.get("signature")), validate=True)
except (binascii.Error, ValueError):
    raw_signature = b""
if len(raw_signature) != 64:
    refuse(filename + ".sig holds no Ed25519 signature")
if key not in trusted:
    known = ", ".join(sorted(trusted))
    refuse(filename + " is signed by key " + str(key) + ", which is not a release key (trusted: " + known + ")")
digest = hashlib.sha256()
with open(wheel, "rb") as handle:
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
fields = "distribution=passport-portal\nversion=" + version + "\nfilename=" + filename
fields += "\nsha256=" + digest.hexdigest() + "\n"
message = b"passport-cli-release-signature/v1\n" + fields.encode("ascii")
der = bytes.fromhex("302a300506032b6570032100") + trusted[key]
pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode("ascii") + "\n-----END PUBLIC KEY-----\n"
outputs = {"message": message, "signature": raw_signature, "key.raw": trusted[key], "key.pem": pem.encode()}
for name, data in outputs.items():
    with open(out + "/" + name, "wb") as written:
        written.write(data)
print(key)
