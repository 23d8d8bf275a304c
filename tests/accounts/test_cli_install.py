"""The "Install the Passport CLI" page and the install scripts the portal serves (/cli/install.sh,
/cli/install.ps1): who sees what, what they embed (the configured public URL, never the Host
header; the newest release; the trusted release keys), and the signature files beside wheels."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import Client

from accounts import cli_releases, cli_signing
from accounts.models import User
from core.files import file_sha256
from passport_cli import release_keys
from passport_portal.connection_checks import base_url_check
from tests.factories import make_user

pytestmark = pytest.mark.django_db

BASE = "https://passport.example.com"
WHEEL = "passport_portal-3.2.1-py3-none-any.whl"


@pytest.fixture
def release_key(monkeypatch: pytest.MonkeyPatch) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    monkeypatch.setattr(release_keys, "RELEASE_KEYS", (cli_signing.signing_key_public_line(key),))
    return key


@pytest.fixture
def portal(settings: Any, tmp_path: Path) -> Path:
    settings.PASSPORT_BASE_URL = BASE + "/"
    settings.PASSPORT_CLI_WHEEL_DIR = tmp_path / "published"
    return tmp_path


def _publish(tmp_path: Path, version: str, key: Ed25519PrivateKey | None) -> Path:
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    wheel = staging / f"passport_portal-{version}-py3-none-any.whl"
    wheel.write_bytes(f"wheel {version}".encode())

    def sign(filename: str, sha256: str) -> Any:
        assert key is not None
        return cli_signing.release_sign(key=key, filename=filename, sha256=sha256)

    cli_releases.cli_release_publish(wheel=wheel, sign=sign if key else None)
    return wheel


def _signed_in() -> Client:
    client = Client()
    client.force_login(User.objects.filter(username="alice").first() or make_user("alice"))
    return client


def test_the_page_shows_the_newest_release_its_files_and_the_commands(
    portal: Path, release_key: Ed25519PrivateKey
) -> None:
    _publish(portal, "3.1.0", release_key)
    newest = _publish(portal, "3.2.1", release_key)
    page = _signed_in().get("/cli/install/", HTTP_HOST="127.0.0.1")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Passport CLI 3.2.1" in html and "3.1.0" not in html
    assert f'href="{BASE}/cli/releases/{WHEEL}"' in html
    assert f'href="{BASE}/cli/releases/{WHEEL}.sig"' in html
    assert file_sha256(newest) in html
    assert f"curl -sL {BASE}/cli/install.sh | sudo sh -s" in html
    assert 'href="/cli/install.ps1"' in html and f"irm {BASE}/cli/install.ps1 | iex" in html
    fingerprint = cli_signing.signing_key_fingerprint(release_key)
    assert fingerprint in html and "passport version" in html
    assert "127.0.0.1" not in html  # the Host header is nowhere in it
    # Linked from the person menu and the CLI sign-ins page.
    sign_ins = _signed_in().get("/cli/sign-ins/").content.decode()
    assert sign_ins.count('href="/cli/install/"') == 2


def test_the_page_says_when_nothing_is_published_and_how_to_publish(portal: Path) -> None:
    html = _signed_in().get("/cli/install/").content.decode()
    assert "No release is published" in html and "build_cli_wheel --signing-key" in html
    assert "curl -sL" not in html and "/cli/releases/" not in html


def test_the_page_is_for_signed_in_people_only(portal: Path, release_key: Ed25519PrivateKey) -> None:
    _publish(portal, "3.2.1", release_key)
    response = Client().get("/cli/install/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert Client().post("/cli/install/").status_code in {302, 405}


def test_the_scripts_are_public_plain_text_and_embed_the_configured_url_not_the_host(
    portal: Path, release_key: Ed25519PrivateKey
) -> None:
    _publish(portal, "3.2.1", release_key)
    fingerprint = cli_signing.signing_key_fingerprint(release_key)
    for path in ("/cli/install.sh", "/cli/install.ps1"):
        response = Client().get(path, HTTP_HOST="localhost", HTTP_X_FORWARDED_HOST="evil.example")
        assert response.status_code == 200, path
        assert response["Content-Type"] == "text/plain; charset=utf-8"
        script = response.content.decode()
        assert "localhost" not in script and "evil.example" not in script
        embedded = re.escape(BASE)
        assert re.search(rf"(?m)^\$PortalUrl = '{embedded}'$|^PORTAL_URL='{embedded}'$", script)
        assert f"'{WHEEL}'" in script and "'3.2.1'" in script
        assert fingerprint in script and "@@" not in script
    # The sh script is valid POSIX sh, as served.
    script = Client().get("/cli/install.sh").content
    assert subprocess.run(["sh", "-n"], input=script, check=False).returncode == 0


def test_without_a_public_url_or_a_release_the_scripts_only_refuse(
    portal: Path, settings: Any, release_key: Ed25519PrivateKey
) -> None:
    response = Client().get("/cli/install.sh")
    assert response.status_code == 503 and response["Content-Type"] == "text/plain; charset=utf-8"
    ran = subprocess.run(["sh"], input=response.content, capture_output=True, check=False)
    assert ran.returncode == 1 and b"no passport CLI release is published" in ran.stderr

    _publish(portal, "3.2.1", release_key)
    for unset in ("", "javascript:alert(1)", "https://x.example/'; rm -rf ~; '"):
        settings.PASSPORT_BASE_URL = unset
        for path in ("/cli/install.sh", "/cli/install.ps1"):
            response = Client().get(path, HTTP_HOST="localhost")
            assert response.status_code == 503, (unset, path)
            assert b"PASSPORT_BASE_URL" in response.content and b"localhost" not in response.content
            assert b"rm -rf" not in response.content
        ran = subprocess.run(["sh"], input=Client().get("/cli/install.sh").content, capture_output=True, check=False)
        assert ran.returncode == 1 and b"PASSPORT_BASE_URL" in ran.stderr
        page = _signed_in().get("/cli/install/").content.decode()
        assert "PASSPORT_BASE_URL" in page and "curl -sL" not in page


def test_with_the_public_url_unset_the_scripts_embed_the_development_default(
    portal: Path, settings: Any, release_key: Ed25519PrivateKey
) -> None:
    # README (Installing the CLI): unset, PASSPORT_BASE_URL is http://localhost:8000, the development
    # default; the scripts embed it and install from there (production does not start with it,
    # passport.E004: tests/passport_portal/test_production_start.py). Only empty or not a plain
    # http(s) URL makes them refuse (the test above).
    unset = {name: value for name, value in os.environ.items() if not name.startswith("PASSPORT_BASE_URL")}
    read = "import django; django.setup(); from django.conf import settings; print(settings.PASSPORT_BASE_URL)"
    done = subprocess.run(
        [sys.executable, "-c", read],
        env={**unset, "DJANGO_SETTINGS_MODULE": "passport_portal.settings"},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "http://localhost:8000"

    _publish(portal, "3.2.1", release_key)
    settings.PASSPORT_BASE_URL = done.stdout.strip()
    response = Client().get("/cli/install.sh")
    assert response.status_code == 200
    assert "PORTAL_URL='http://localhost:8000'" in response.content.decode().splitlines()
    assert [finding.id for finding in base_url_check(None)] == ["passport.W004"]  # outside production: a warning


def test_the_signature_is_served_beside_its_wheel_only_when_published(
    portal: Path, release_key: Ed25519PrivateKey
) -> None:
    _publish(portal, "3.2.1", release_key)
    response = Client().get(f"/cli/releases/{WHEEL}.sig")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    served = json.loads(response.content)
    assert served == cli_releases.cli_release_list()[0].signature.as_dict()  # type: ignore[union-attr]
    assert served["key"] == cli_signing.signing_key_fingerprint(release_key)
    _publish(portal, "3.3.0", None)  # unsigned: no signature to serve
    assert Client().get("/cli/releases/passport_portal-3.3.0-py3-none-any.whl.sig").status_code == 404
    assert Client().get("/cli/releases/passport_portal-9.9.9-py3-none-any.whl.sig").status_code == 404
    assert Client().get("/cli/releases/SHA256SUMS.sig").status_code == 404


def test_the_powershell_script_embeds_the_values_and_whole_python_checks(
    portal: Path, release_key: Ed25519PrivateKey
) -> None:
    _publish(portal, "3.2.1", release_key)
    script = Client().get("/cli/install.ps1").content.decode()
    assert f"$PortalUrl = '{BASE}'" in script and f"$Wheel = '{WHEEL}'" in script and "$Version = '3.2.1'" in script
    key = release_key.public_key().public_bytes_raw()
    fingerprint = cli_signing.signing_key_fingerprint(release_key)
    assert f"$TrustedKeys = '{fingerprint} {base64.b64encode(key).decode()}'" in script
    # The two Python programs it writes out (PowerShell here-strings) are whole and valid.
    programs = re.findall(r"(?s)-Value @'\n(.*?)\n'@", script)
    assert len(programs) == 2
    for program in programs:
        compile(program, "install.ps1", "exec")
    assert "Ed25519PublicKey" in programs[1] and "passport-cli-release-signature/v1" in programs[0]


@pytest.mark.parametrize("kind", ["sh", "ps1"])
def test_the_scripts_run_python_only_with_safe_path_from_their_own_directory(
    portal: Path, release_key: Ed25519PrivateKey, kind: str
) -> None:
    """Piped to `sudo sh -s` (or `iex`) from a shared directory, a `python -m venv` / `-m pip` / `-c`
    would import a venv.py, pip or shutil.py planted there: each Python call carries -P, and the
    script moves into its private directory, with PYTHONSAFEPATH set, before the first.
    (install.sh is also run so in tests/cli/test_install_script.py; install.ps1 only read here.)"""
    _publish(portal, "3.2.1", release_key)
    script = Client().get(f"/cli/install.{kind}").content.decode()
    calls = re.findall(r"(\S+) -[mc] ", script)  # python -m venv, -m pip, -c '...'
    assert len(calls) >= (7 if kind == "sh" else 6) and set(calls) == {"-P"}, calls
    # The two helper programs, run by path (not where they are written out: -LiteralPath, >"$WORK/...").
    helpers = re.findall(r"""(\S+) (?:"\$WORK/|\(Join-Path \$Work ')(?:prepare|verify)\.py""", script)
    assert [token for token in helpers if token != "-LiteralPath"] == ["-P", "-P"], helpers
    first = script.index(" -P -m ")
    moves = r'^cd "\$WORK"$' if kind == "sh" else r"^Push-Location -LiteralPath \$Work "
    assert re.search(moves, script[:first], re.MULTILINE)
    safe = "export PYTHONSAFEPATH" if kind == "sh" else "$env:PYTHONSAFEPATH = '1'"
    assert safe in script[:first]
    if kind == "ps1":  # Put back afterwards: `irm | iex` runs in the caller's session.
        assert re.search(r"(?s)\} finally \{\s*Pop-Location\s*\$env:PYTHONSAFEPATH = \$SafePathBefore", script)
