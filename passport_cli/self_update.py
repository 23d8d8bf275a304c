"""`passport version --self-update`: install another published wheel of this CLI from the portal.

The portal's index (``GET /api/cli/releases/``) lists each wheel with its SHA-256. The wheel is
downloaded from the same portal into a private temporary directory, and pip installs it only
when its digest is the one the index gave: a wheel altered on the way or on disk is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from passport_cli import __version__
from passport_cli.client import TIMEOUT, Portal
from passport_cli.errors import CliError, Exit

DISTRIBUTION = "passport-portal"  # pyproject.toml's name: the CLI is packaged as this
WHEEL_NAME_RE = re.compile(r"passport_portal-[0-9][0-9A-Za-z.!+]{0,63}-py3-none-any\.whl")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
MAX_WHEEL_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Release:
    version: str
    filename: str
    url: str
    sha256: str


@dataclass(frozen=True)
class UpdateResult:
    updated: bool
    previous: str
    version: str
    filename: str = ""
    sha256: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "updated": self.updated,
            "previous": self.previous,
            "version": self.version,
            "wheel": self.filename or None,
            "sha256": self.sha256 or None,
        }


def normalize_version(text: str) -> str:
    return text.strip().lower().removeprefix("v")


def require_secure_portal(base: str) -> None:
    """Code is about to be installed: only over HTTPS, except from this machine."""
    parts = urlsplit(base)
    if parts.scheme != "https" and parts.hostname not in LOOPBACK_HOSTS:
        raise CliError(f"Refusing to update over plain HTTP from {base}: use the portal's https:// URL.", Exit.USAGE)


def fetch_releases(portal: Portal) -> tuple[str | None, list[Release]]:
    """The index as (latest version, releases newest first); a malformed index is an error."""
    body = portal.get("/api/cli/releases/")
    try:
        releases = [
            Release(
                version=normalize_version(str(item["version"])),
                filename=str(item["filename"]),
                url=str(item["url"]),
                sha256=str(item["sha256"]).lower(),
            )
            for item in body["releases"]
        ]
        latest = body.get("latest")
    except (KeyError, TypeError, AttributeError) as error:
        raise CliError(f"The portal's release index is not what this CLI expects ({error!r}).") from error
    return (normalize_version(str(latest)) if latest else None), releases


def choose_release(releases: list[Release], latest: str | None, wanted: str | None, base: str) -> Release:
    target = normalize_version(wanted) if wanted else latest
    if not releases or target is None:
        raise CliError(f"{base} publishes no passport CLI releases.", Exit.NOT_FOUND)
    for release in releases:
        if release.version == target:
            return release
    available = ", ".join(release.version for release in releases)
    raise CliError(f"Version {target} is not published by {base} (available: {available}).", Exit.NOT_FOUND)


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
        raise CliError(f"The index names an unexpected file {release.filename!r}: refusing it.")
    url = urljoin(f"{portal.base_url}/", release.url)
    wanted, got = urlsplit(portal.base_url), urlsplit(url)
    if (got.scheme, got.netloc) != (wanted.scheme, wanted.netloc):
        raise CliError(f"The index points outside the portal ({url}): refusing to download it.")
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
        raise CliError(f"Cannot download {url}: {error}", Exit.UNREACHABLE) from error
    return path, digest.hexdigest()


def pip_install(wheel: Path) -> None:
    """This interpreter's pip, offline: the wheel alone (its dependencies are the ones already installed)."""
    command = [
        sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall", "--no-index",
        "--disable-pip-version-check", "--no-input", "--quiet", str(wheel),
    ]  # fmt: skip
    installed = subprocess.run(command, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
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
    if not SHA256_RE.fullmatch(release.sha256):
        raise CliError(f"The index gives no usable SHA-256 for {release.filename}: refusing it.")
    check_installable()
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
        updated=True, previous=current, version=release.version, filename=release.filename, sha256=release.sha256
    )
