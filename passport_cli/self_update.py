"""`passport version --self-update`: install another published wheel of this CLI from the portal.

The portal's index (``GET /api/cli/releases/``) lists each wheel with its SHA-256 and the
release key's signature over its name, version and digest (``release_signature``). Nothing from
the portal is trusted by itself: the signature must verify with a key built into this CLI
(``release_keys``) before anything is downloaded, and pip installs the wheel only when the digest
of what arrived is the signed one. An unsigned wheel, one signed by another key, a signature
moved onto another version's wheel, or a wheel altered after signing is refused, and the
installed version stays as it was. Without ``--to-version`` it never goes back to an older
version (in PEP 440's order: 0.1.0rc1 is older than 0.1.0) nor to one it cannot place: a portal
cannot roll users back to an old (signed) release.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from passport_cli import __version__, release_keys
from passport_cli.client import TIMEOUT, Portal, cleartext_elsewhere, unreachable_reason
from passport_cli.display import printable
from passport_cli.errors import CliError, Exit
from passport_cli.release_signature import (
    DISTRIBUTION,
    SHA256_RE,
    VERSION_RE,
    WHEEL_NAME_RE,
    ReleaseSignature,
    SignatureRefused,
    verify_release,
    wheel_version,
)

MAX_WHEEL_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Release:
    version: str
    filename: str
    url: str
    sha256: str
    signature: ReleaseSignature | None = None


@dataclass(frozen=True)
class UpdateResult:
    updated: bool
    previous: str
    version: str
    filename: str = ""
    sha256: str = ""
    signed_by: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "updated": self.updated,
            "previous": self.previous,
            "version": self.version,
            "wheel": self.filename or None,
            "sha256": self.sha256 or None,
            "signed_by": self.signed_by or None,
        }


def normalize_version(text: str) -> str:
    return text.strip().lower().removeprefix("v")


def require_secure_portal(base: str) -> None:
    """Code is about to be installed: only over HTTPS, except from this machine."""
    if cleartext_elsewhere(base):
        raise CliError(f"Refusing to update over plain HTTP from {base}: use the portal's https:// URL.", Exit.USAGE)


def _index_version(value: object) -> str:
    """A version from the index, normalized; one no wheel name could carry makes the index malformed
    (it would reach messages and the ``--to-version`` hint)."""
    version = normalize_version(str(value))
    if not VERSION_RE.fullmatch(version):
        raise CliError(
            f"The portal's release index lists '{printable(value, limit=80)}' as a version: "
            "not one a passport wheel can carry. Tell the portal's operators."
        )
    return version


def fetch_releases(portal: Portal) -> tuple[str | None, list[Release]]:
    """The index as (latest version, releases newest first); a malformed index is an error."""
    body = portal.get("/api/cli/releases/")
    try:
        releases = [
            Release(
                version=_index_version(item["version"]),
                filename=str(item["filename"]),
                url=str(item["url"]),
                sha256=str(item["sha256"]).lower(),
                signature=ReleaseSignature.from_dict(item.get("signature")),
            )
            for item in body["releases"]
        ]
        latest = body.get("latest")
    except (KeyError, TypeError, AttributeError) as error:
        raise CliError(f"The portal's release index is not what this CLI expects ({error!r}).") from error
    return (_index_version(latest) if latest else None), releases


def choose_release(releases: list[Release], latest: str | None, wanted: str | None, base: str) -> Release:
    target = normalize_version(wanted) if wanted else latest
    if not releases or target is None:
        raise CliError(f"{base} publishes no passport CLI releases.", Exit.NOT_FOUND)
    for release in releases:
        if release.version == target:
            return release
    available = ", ".join(printable(release.version) for release in releases)
    raise CliError(
        f"Version {printable(target)} is not published by {printable(base)} (available: {available}).", Exit.NOT_FOUND
    )


def _older(target: str, installed: str) -> bool | None:
    """Whether ``target`` comes before ``installed`` in PEP 440's order (0.1.0rc1 before 0.1.0,
    0.1.0 before 0.1.0.post1 and 0.1.0+local); None when either is no PEP 440 version."""
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError as error:
        raise CliError(
            "Comparing versions needs the 'packaging' package: pip install 'packaging>=22' "
            "(a dependency of this CLI since it compares pre-releases)."
        ) from error
    try:
        return Version(target) < Version(installed)
    except InvalidVersion:
        return None


def refuse_rollback(release: Release, current: str, wanted: str | None) -> None:
    """Without --to-version, the latest version never means an older one, nor one it cannot place:
    going back must be asked for."""
    if wanted is not None:
        return
    older = _older(release.version, current)
    # fetch_releases checked the version; quoted and escaped all the same, since this line is for pasting.
    shown = printable(release.version, limit=80)
    anyway = (
        "To install it anyway: passport version --self-update --to-version "
        f"{printable(shlex.quote(release.version), limit=80)}"
    )
    if older is None:
        raise CliError(
            f"The portal's latest version {shown} cannot be compared with this passport {current} "
            f"(not PEP 440 versions): not installing it. {anyway}"
        )
    if older:
        raise CliError(
            f"The portal's latest version is {shown}, older than this passport {current}: not going back. {anyway}"
        )


def check_signature(release: Release) -> str:
    """The release key's fingerprint when the signature holds for this file, version and digest."""
    version = wheel_version(release.filename)
    if version is None or normalize_version(version) != release.version:
        raise CliError(
            f"The index lists '{printable(release.filename, limit=200)}' as version "
            f"{printable(release.version, limit=80)}: refusing it."
        )
    try:
        return verify_release(
            filename=release.filename,
            sha256=release.sha256,
            signature=release.signature,
            trusted=release_keys.RELEASE_KEYS,
        )
    except SignatureRefused as refused:
        raise CliError(
            f"Refusing to install {release.filename}: {refused.message}. Nothing was installed; "
            "tell the portal's operators.",
            refused.code,
        ) from refused


def check_installable() -> None:
    """Only a copy pip installed can be replaced: not an editable install, not a checkout run in place.

    The running files must be listed in the RECORD of a non-editable passport-portal install (a
    source tree's egg-info, found first when run from the checkout, has no RECORD).
    """
    running = Path(__file__).resolve().with_name("__init__.py")
    editable = False
    for distribution in importlib.metadata.distributions(name=DISTRIBUTION):
        direct_url = distribution.read_text("direct_url.json")
        if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
            editable = True
            continue
        record = distribution.read_text("RECORD") or ""
        listed = {line.split(",", 1)[0] for line in record.splitlines()}
        if "passport_cli/__init__.py" in listed and (
            Path(str(distribution.locate_file("passport_cli/__init__.py"))).resolve() == running
        ):
            return
    if editable:
        raise CliError("This passport is an editable install of a source checkout: update the checkout instead.")
    raise CliError(f"This passport runs from {running.parent}, which pip did not install: it cannot update itself.")


def download(portal: Portal, release: Release, directory: Path) -> tuple[Path, str]:
    """The wheel saved under its own (checked) name, and the SHA-256 of what arrived."""
    if not WHEEL_NAME_RE.fullmatch(release.filename):
        raise CliError(f"The index names an unexpected file '{printable(release.filename, limit=200)}': refusing it.")
    url = urljoin(f"{portal.base_url}/", release.url)
    wanted, got = urlsplit(portal.base_url), urlsplit(url)
    if (got.scheme, got.netloc) != (wanted.scheme, wanted.netloc):
        # The url is the one field of an entry no signature covers: quoted escaped, it fakes no line.
        raise CliError(f"The index points outside the portal ({printable(url, limit=200)}): refusing to download it.")
    digest = hashlib.sha256()
    path = directory / release.filename
    received = 0
    try:
        with portal.session.get(url, stream=True, timeout=TIMEOUT) as response:
            if response.status_code != 200:
                raise CliError(f"Downloading {release.filename} failed: the portal answered {response.status_code}.")
            with path.open("wb") as handle:
                for chunk in response.iter_content(chunk_size=65536):
                    received += len(chunk)
                    if received > MAX_WHEEL_BYTES:
                        raise CliError(f"{release.filename} is larger than {MAX_WHEEL_BYTES} bytes: refusing it.")
                    digest.update(chunk)
                    handle.write(chunk)
    except requests.RequestException as error:
        raise CliError(
            f"cannot download {printable(url, limit=200)}: {unreachable_reason(error)}", Exit.UNREACHABLE
        ) from error
    return path, digest.hexdigest()


def pip_install(wheel: Path) -> None:
    """This interpreter's pip, offline: the wheel alone (its dependencies are the ones already installed)."""
    # -P: a ``pip`` folder in the current directory is not the pip that runs; from a private
    # temporary directory, for whatever pip itself reads from its working directory.
    command = [
        sys.executable, "-P", "-m", "pip", "install", "--no-deps", "--force-reinstall", "--no-index",
        "--disable-pip-version-check", "--no-input", "--quiet", str(wheel),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="passport-pip-") as cwd:
        installed = subprocess.run(
            command, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, cwd=cwd
        )
    if installed.returncode != 0:
        raise CliError(f"pip could not install {wheel.name} (exit {installed.returncode}):\n{installed.stderr[-2000:]}")


def installed_version() -> str:
    """What a fresh interpreter now imports (-P: not a passport_cli that happens to be in the current directory)."""
    probe = subprocess.run(
        [sys.executable, "-P", "-c", "import passport_cli; print(passport_cli.__version__)"],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return normalize_version(probe.stdout) if probe.returncode == 0 else f"unknown ({probe.stderr.strip()[-200:]})"


def self_update(portal: Portal, wanted: str | None, progress: Callable[[str], None]) -> UpdateResult:
    require_secure_portal(portal.base_url)
    progress(f"reading the published versions at {portal.base_url}")
    latest, releases = fetch_releases(portal)
    release = choose_release(releases, latest, wanted, portal.base_url)
    current = normalize_version(__version__)
    if release.version == current:
        return UpdateResult(updated=False, previous=current, version=current)
    refuse_rollback(release, current, wanted)
    if not SHA256_RE.fullmatch(release.sha256):
        raise CliError(
            f"The index gives no usable SHA-256 for '{printable(release.filename, limit=200)}': refusing it."
        )
    check_installable()
    # Before downloading: the signed digest is then what the download must match.
    signed_by = check_signature(release)
    progress(f"signature by release key {signed_by} verified")
    with tempfile.TemporaryDirectory(prefix="passport-update-") as scratch:
        progress(f"downloading {release.filename}")
        wheel, sha256 = download(portal, release, Path(scratch))
        if not hmac.compare_digest(sha256, release.sha256):
            raise CliError(
                f"Refusing to install {release.filename}: its SHA-256 is {sha256}, but the portal's index says "
                f"{release.sha256}. Nothing was installed; tell the portal's operators."
            )
        progress(f"SHA-256 verified; installing passport {release.version} (was {current})")
        pip_install(wheel)
    now = installed_version()
    if now != release.version:
        raise CliError(f"pip installed {release.filename}, but passport now reports version {now}.")
    return UpdateResult(
        updated=True,
        previous=current,
        version=release.version,
        filename=release.filename,
        sha256=release.sha256,
        signed_by=signed_by,
    )
