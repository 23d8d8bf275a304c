"""The CLI's published wheels: `manage.py build_cli_wheel`, the index at /api/cli/releases/ and the
download at /cli/releases/<file> (only what the manifest publishes, never a path)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

import passport_cli
from accounts import cli_releases, cli_signing
from passport_cli.release_signature import ReleaseSignature, key_fingerprint, verify_release

pytestmark = pytest.mark.django_db


def _fake_wheel(directory: Path, version: str, content: bytes | None = None) -> Path:
    path = directory / f"passport_portal-{version}-py3-none-any.whl"
    path.write_bytes(content if content is not None else f"wheel {version}".encode())
    return path


@pytest.fixture
def wheel_dir(tmp_path: Path, settings: Any) -> Path:
    directory = tmp_path / "published"
    settings.PASSPORT_CLI_WHEEL_DIR = directory
    return directory


def test_index_orders_versions_as_versions_and_ignores_junk(wheel_dir: Path, tmp_path: Path, client: Client) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    for version in ("0.9.0", "0.10.0", "0.2.0", "1.0.0rc1"):
        cli_releases.cli_release_publish(wheel=_fake_wheel(staging, version))
    # Junk beside them: not in the manifest, other projects, bad versions, a directory, a stray manifest line.
    (wheel_dir / "notes.txt").write_text("hello")
    _fake_wheel(wheel_dir, "5.0.0")  # on disk but never published
    (wheel_dir / "other_tool-9.0.0-py3-none-any.whl").write_bytes(b"x")
    (wheel_dir / "passport_portal-9.9.9-py3-none-any.whl").mkdir()
    with (wheel_dir / cli_releases.CLI_MANIFEST_NAME).open("a") as manifest:
        manifest.write(f"{'a' * 64}  other_tool-9.0.0-py3-none-any.whl\n")
        manifest.write(f"{'b' * 64}  passport_portal-9.9.9-py3-none-any.whl\n")
        manifest.write(f"{'c' * 64}  passport_portal-not.a.version-py3-none-any.whl\n")
        manifest.write(f"{'d' * 64}  passport_portal-8.0.0-py3-none-any.whl\n")  # listed, file missing
        manifest.write("not a manifest line\n")

    response = client.get("/api/cli/releases/")
    assert response.status_code == 200
    body = response.json()
    assert [item["version"] for item in body["releases"]] == ["1.0.0rc1", "0.10.0", "0.9.0", "0.2.0"]
    assert body["latest"] == "1.0.0rc1"
    newest_stable = body["releases"][1]
    wheel = wheel_dir / "passport_portal-0.10.0-py3-none-any.whl"
    assert newest_stable == {
        "version": "0.10.0",
        "filename": wheel.name,
        "url": f"http://testserver/cli/releases/{wheel.name}",
        "sha256": hashlib.sha256(b"wheel 0.10.0").hexdigest(),
        "size": wheel.stat().st_size,
        "signature": None,  # published without a release key: the CLI will refuse it
    }

    download = client.get(f"/cli/releases/{wheel.name}")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"wheel 0.10.0"  # type: ignore[attr-defined]
    assert download["Content-Type"] == "application/octet-stream"
    assert wheel.name in download["Content-Disposition"]


def test_empty_index_when_nothing_is_published(wheel_dir: Path, client: Client) -> None:
    assert client.get("/api/cli/releases/").json() == {"latest": None, "releases": []}
    assert client.get("/cli/releases/passport_portal-0.1.0-py3-none-any.whl").status_code == 404


def test_download_refuses_paths_unpublished_files_and_symlinks(wheel_dir: Path, tmp_path: Path, client: Client) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    cli_releases.cli_release_publish(wheel=_fake_wheel(staging, "1.0.0"))
    _fake_wheel(wheel_dir, "2.0.0")  # present but not in the manifest
    secret = tmp_path / "secret.txt"
    secret.write_text("not for download")
    link = wheel_dir / "passport_portal-3.0.0-py3-none-any.whl"
    link.symlink_to(secret)
    with (wheel_dir / cli_releases.CLI_MANIFEST_NAME).open("a") as manifest:
        manifest.write(f"{hashlib.sha256(secret.read_bytes()).hexdigest()}  {link.name}\n")

    assert client.get("/cli/releases/passport_portal-1.0.0-py3-none-any.whl").status_code == 200
    for attempt in (
        "/cli/releases/passport_portal-2.0.0-py3-none-any.whl",
        f"/cli/releases/{link.name}",
        "/cli/releases/SHA256SUMS",
        "/cli/releases/..%2Fsecret.txt",
        "/cli/releases/%2e%2e%2f%2e%2e%2fsettings%2f__init__.py",
        "/cli/releases/../../passport_portal/settings/__init__.py",
        "/cli/releases/passport_portal-..-py3-none-any.whl",
        "/cli/releases/passport_portal-1.0.0-py3-none-any.whl%00.txt",
        "/cli/releases/passport_portal-9.9.9-py3-none-any.whl",
    ):
        response = client.get(attempt)
        assert response.status_code == 404, attempt
        assert b"not for download" not in response.content
    assert [item["version"] for item in client.get("/api/cli/releases/").json()["releases"]] == ["1.0.0"]
    assert client.post("/cli/releases/passport_portal-1.0.0-py3-none-any.whl").status_code == 405


def test_publish_refuses_other_files(wheel_dir: Path, tmp_path: Path) -> None:
    stray = tmp_path / "passport_portal.whl"
    stray.write_bytes(b"x")
    with pytest.raises(cli_releases.CliReleaseError, match="not a passport CLI wheel"):
        cli_releases.cli_release_publish(wheel=stray)
    assert not wheel_dir.exists()


def test_build_cli_wheel_publishes_the_current_tree(wheel_dir: Path, client: Client, tmp_path: Path) -> None:
    key_path = tmp_path / "release.key"
    call_command("build_cli_wheel", generate_signing_key=key_path)
    stderr = io.StringIO()
    call_command("build_cli_wheel", signing_key=key_path, stderr=stderr, stdout=io.StringIO())
    name = f"passport_portal-{passport_cli.__version__}-py3-none-any.whl"
    wheel = wheel_dir / name
    manifest = (wheel_dir / cli_releases.CLI_MANIFEST_NAME).read_text()
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert manifest == f"{digest}  {name}\n"
    # Signed with the release key; the tree's release_keys.py does not list it, which the command says.
    public = (tmp_path / "release.key.pub").read_text().strip()
    served = client.get("/api/cli/releases/").json()["releases"][0]["signature"]
    signature = ReleaseSignature.from_dict(served)
    assert signature is not None and served["format"] == "passport-cli-release-signature/v1"
    assert verify_release(filename=name, sha256=digest, signature=signature, trusted=(public,)) == key_fingerprint(
        public
    )
    assert "does not list the signing key" in stderr.getvalue() and signature.key in stderr.getvalue()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(f"passport_portal-{passport_cli.__version__}.dist-info/entry_points.txt")
    assert "passport_cli/main.py" in names and "ssmchannel/link.py" in names
    # Subpackages too, or the installed CLI cannot import them.
    assert {"ssmchannel/messages/frames.py", "ssmchannel/channel/core.py"} <= set(names)
    assert not any(name.startswith(("accounts/", "tests/")) or "__pycache__" in name for name in names)
    assert b"passport = passport_cli.main:main" in entry_points
    assert client.get("/api/cli/releases/").json()["latest"] == passport_cli.__version__


def test_build_cli_wheel_refuses_a_version_mismatch(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    tree = tmp_path / "tree"
    tree.mkdir()
    project = (root / "pyproject.toml").read_text()
    (tree / "pyproject.toml").write_text(project)
    for package in tomllib.loads(project)["tool"]["setuptools"]["packages"]:  # an empty one of each
        (tree / package.replace(".", "/")).mkdir(parents=True)
        (tree / package.replace(".", "/") / "__init__.py").write_text("")
    (tree / "passport_cli" / "__init__.py").write_text('__version__ = "4.5.6"\n')
    with pytest.raises(CommandError, match=r"passport_cli.__version__ is 4\.5\.6"):
        call_command("build_cli_wheel", source=tree, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- release signatures ------------------------------------------------------------------


def test_generate_signing_key_writes_a_private_key_and_the_line_to_embed(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "release.key"
    path.parent.mkdir()
    out = io.StringIO()
    call_command("build_cli_wheel", generate_signing_key=path, stdout=out)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    public = (tmp_path / "keys" / "release.key.pub").read_text().strip()
    assert public.startswith("ssh-ed25519 ") and f"{public!r}," in out.getvalue()
    assert key_fingerprint(public) in out.getvalue()
    key = cli_signing.signing_key_load(path=path)
    assert cli_signing.signing_key_public_line(key) == public
    # Never over an existing key.
    with pytest.raises(CommandError, match="already exists"):
        call_command("build_cli_wheel", generate_signing_key=path)
    assert cli_signing.signing_key_public_line(cli_signing.signing_key_load(path=path)) == public


def _signed(key_path: Path, passphrase: bytes | None = None) -> bool:
    key = cli_signing.signing_key_load(path=key_path, passphrase=passphrase)
    name, digest = "passport_portal-1.0.0-py3-none-any.whl", "a" * 64
    signature = cli_signing.release_sign(key=key, filename=name, sha256=digest)
    public = cli_signing.signing_key_public_line(key)
    return verify_release(filename=name, sha256=digest, signature=signature, trusted=(public,)) == signature.key


@pytest.mark.skipif(shutil.which("openssl") is None or shutil.which("ssh-keygen") is None, reason="openssl/ssh-keygen")
def test_keys_made_with_openssl_or_ssh_keygen_sign_and_others_are_refused(tmp_path: Path) -> None:
    def run(*command: str) -> None:
        subprocess.run(command, check=True, capture_output=True, cwd=tmp_path)

    run("openssl", "genpkey", "-algorithm", "ed25519", "-out", "pkcs8.pem")
    assert _signed(tmp_path / "pkcs8.pem")
    (tmp_path / "passphrase").write_text("correct horse\n")
    run("openssl", "genpkey", "-algorithm", "ed25519", "-aes-256-cbc", "-pass", "pass:correct horse", "-out", "enc.pem")
    assert _signed(tmp_path / "enc.pem", b"correct horse")
    with pytest.raises(cli_signing.SigningKeyError, match="not a usable private key"):
        cli_signing.signing_key_load(path=tmp_path / "enc.pem", passphrase=b"wrong")
    with pytest.raises(cli_signing.SigningKeyError):
        cli_signing.signing_key_load(path=tmp_path / "enc.pem")
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "ssh_key")
    assert _signed(tmp_path / "ssh_key")
    run("openssl", "genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.pem")
    with pytest.raises(cli_signing.SigningKeyError, match="not an Ed25519 key"):
        cli_signing.signing_key_load(path=tmp_path / "rsa.pem")
    with pytest.raises(cli_signing.SigningKeyError, match="Cannot read"):
        cli_signing.signing_key_load(path=tmp_path / "missing.pem")
    # Through the command: a bad key stops it before anything is built or published.
    with pytest.raises(CommandError, match="not an Ed25519 key"):
        call_command("build_cli_wheel", signing_key=tmp_path / "rsa.pem", output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_publish_writes_the_signature_beside_the_wheel_and_an_unsigned_republish_drops_it(
    wheel_dir: Path, tmp_path: Path, client: Client
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    key = cli_signing.signing_key_load(path=_new_key(tmp_path))
    wheel = _fake_wheel(staging, "2.0.0")

    def sign(filename: str, sha256: str) -> ReleaseSignature:
        return cli_signing.release_sign(key=key, filename=filename, sha256=sha256)

    release = cli_releases.cli_release_publish(wheel=wheel, sign=sign)
    signature_file = wheel_dir / f"{wheel.name}.sig"
    assert release.signature is not None
    assert json.loads(signature_file.read_text()) == release.signature.as_dict()
    served = client.get("/api/cli/releases/").json()["releases"][0]
    assert served["signature"] == release.signature.as_dict()
    assert verify_release(
        filename=wheel.name,
        sha256=served["sha256"],
        signature=ReleaseSignature.from_dict(served["signature"]),
        trusted=(cli_signing.signing_key_public_line(key),),
    )
    # Also beside the wheel, for the install scripts and people checking a download by hand.
    assert client.get(f"/cli/releases/{wheel.name}.sig").json() == release.signature.as_dict()

    cli_releases.cli_release_publish(wheel=_fake_wheel(staging, "2.0.0", b"rebuilt"))
    assert not signature_file.exists()
    assert client.get("/api/cli/releases/").json()["releases"][0]["signature"] is None
    assert client.get(f"/cli/releases/{wheel.name}.sig").status_code == 404


def test_the_index_serves_no_signature_from_a_malformed_or_linked_file(
    wheel_dir: Path, tmp_path: Path, client: Client
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    key = cli_signing.signing_key_load(path=_new_key(tmp_path))
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        cli_releases.cli_release_publish(
            wheel=_fake_wheel(staging, version),
            sign=lambda filename, sha256: cli_signing.release_sign(key=key, filename=filename, sha256=sha256),
        )
    good = (wheel_dir / "passport_portal-1.0.0-py3-none-any.whl.sig").read_text()
    (wheel_dir / "passport_portal-3.0.0-py3-none-any.whl.sig").write_text("{not json")
    elsewhere = tmp_path / "elsewhere.sig"
    elsewhere.write_text(good)
    linked = wheel_dir / "passport_portal-2.0.0-py3-none-any.whl.sig"
    os.unlink(linked)
    linked.symlink_to(elsewhere)
    signatures = {item["version"]: item["signature"] for item in client.get("/api/cli/releases/").json()["releases"]}
    assert signatures["3.0.0"] is None and signatures["2.0.0"] is None
    assert signatures["1.0.0"] == json.loads(good)
    assert len(base64.b64decode(signatures["1.0.0"]["signature"])) == 64


def _new_key(directory: Path) -> Path:
    path = directory / "release.key"
    cli_signing.signing_key_generate(path=path)
    return path
