"""How people install the passport CLI: the install scripts the portal serves at /cli/install.sh
and /cli/install.ps1, and what the "Install the Passport CLI" page shows (read-only).

Both scripts are the same for everyone (nothing per person, no sign-in): the portal's own public
URL (PASSPORT_BASE_URL as ``core.links.portal_base_url`` reads it for the mails too, never the
request's Host header), the newest published wheel, and the release public keys this portal's CLI
trusts (``passport_cli.release_keys``), with which the script checks the wheel's signature before
it installs anything. Every value put into a script is checked against a strict pattern first, so
none can break out of its quotes.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.urls import reverse

from accounts import cli_releases
from core.links import portal_base_url
from passport_cli import release_keys
from passport_cli.release_signature import WHEEL_NAME_RE, key_fingerprint

_SCRIPTS = Path(__file__).resolve().parent / "install_scripts"
_VERSION_RE = re.compile(r"[0-9][0-9A-Za-z.!+]{0,63}")


@dataclass(frozen=True)
class TrustedKey:
    fingerprint: str  # SHA256:… as ssh-keygen -l prints it
    raw: str  # base64 of the 32-byte Ed25519 public key
    line: str  # the OpenSSH public line


@dataclass(frozen=True)
class InstallInfo:
    """What the page shows and the scripts embed. ``problem`` says why no script can install now."""

    base_url: str
    release: cli_releases.CliRelease | None
    keys: tuple[TrustedKey, ...]
    problem: str

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def wheel_url(self) -> str:
        assert self.release is not None
        return self.url(reverse("cli-release-download", args=[self.release.filename]))

    @property
    def signature_url(self) -> str:
        return self.wheel_url + cli_releases.CLI_SIGNATURE_SUFFIX


def cli_trusted_keys() -> tuple[TrustedKey, ...]:
    """The release keys built into this portal's CLI, skipping any that is not an Ed25519 key."""
    keys = []
    for line in release_keys.RELEASE_KEYS:
        try:
            public = serialization.load_ssh_public_key(line.encode("ascii"))
        except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError):
            continue
        if not isinstance(public, Ed25519PublicKey):
            continue
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        keys.append(TrustedKey(key_fingerprint(line), base64.b64encode(raw).decode("ascii"), line.strip()))
    return tuple(keys)


def cli_install_info() -> InstallInfo:
    base_url = portal_base_url()
    releases = cli_releases.cli_release_index()
    release = releases[0] if releases else None
    keys = cli_trusted_keys()
    if not base_url:
        problem = (
            "this portal's public URL (PASSPORT_BASE_URL) is not set to an http(s) URL, "
            "so the install script cannot say where to download from; ask the portal's administrator to set it"
        )
    elif release is None:
        problem = "no passport CLI release is published on this portal yet; an administrator publishes one"
    elif not WHEEL_NAME_RE.fullmatch(release.filename) or not _VERSION_RE.fullmatch(str(release.version)):
        problem = f"the newest release's file name {release.filename!r} is not one this script can install"
    else:
        problem = ""
    return InstallInfo(base_url=base_url, release=release, keys=keys, problem=problem)


def _refusal_sh(problem: str) -> str:
    text = problem.replace("'", "")
    comment = "# The passport CLI cannot be installed from here now."
    return f"#!/bin/sh\n{comment}\necho 'passport install: {text}.' >&2\nexit 1\n"


def _refusal_ps1(problem: str) -> str:
    text = problem.replace("'", "")
    return f"# The passport CLI cannot be installed from here now.\nWrite-Error 'passport install: {text}.'\nexit 1\n"


def _fill(template: str, info: InstallInfo) -> str:
    assert info.release is not None
    values = {
        "@@PORTAL_URL@@": info.base_url,
        "@@VERSION@@": WHEEL_NAME_RE.fullmatch(info.release.filename)["version"],  # type: ignore[index]
        "@@WHEEL@@": info.release.filename,
        "@@TRUSTED_KEYS@@": "\n".join(f"{key.fingerprint} {key.raw}" for key in info.keys),
        "@@PREPARE_PY@@": (_SCRIPTS / "prepare.py").read_text().rstrip("\n"),
        "@@VERIFY_PY@@": (_SCRIPTS / "verify.py").read_text().rstrip("\n"),
    }
    return re.sub("|".join(re.escape(name) for name in values), lambda match: values[match[0]], template)


def cli_install_script(kind: str) -> tuple[str, bool]:
    """The install script ``kind`` ("sh" or "ps1") and whether it can install (False: it only says why not)."""
    info = cli_install_info()
    if info.problem:
        return (_refusal_sh if kind == "sh" else _refusal_ps1)(info.problem), False
    return _fill((_SCRIPTS / f"install.{kind}").read_text(), info), True


def cli_release_signature_file(filename: str) -> bytes | None:
    """``<wheel>.sig`` of a published, signed wheel, as JSON (``ReleaseSignature.as_dict``); else None."""
    if not filename.endswith(cli_releases.CLI_SIGNATURE_SUFFIX):
        return None
    wheel = filename.removesuffix(cli_releases.CLI_SIGNATURE_SUFFIX)
    if cli_releases.cli_wheel_version(wheel) is None:
        return None
    release = next((item for item in cli_releases.cli_release_index() if item.filename == wheel), None)
    if release is None or release.signature is None:
        return None
    return (json.dumps(release.signature.as_dict(), indent=2) + "\n").encode("ascii")
