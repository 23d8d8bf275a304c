"""The CLI's published wheels: `manage.py build_cli_wheel`, the index at /api/cli/releases/ and the
download at /cli/releases/<file> (only what the manifest publishes, never a path)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

import passport_cli
from accounts import cli_services

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
        cli_services.cli_release_publish(wheel=_fake_wheel(staging, version))
    # Junk beside them: not in the manifest, other projects, bad versions, a directory, a stray manifest line.
    (wheel_dir / "notes.txt").write_text("hello")
    _fake_wheel(wheel_dir, "5.0.0")  # on disk but never published
    (wheel_dir / "other_tool-9.0.0-py3-none-any.whl").write_bytes(b"x")
    (wheel_dir / "passport_portal-9.9.9-py3-none-any.whl").mkdir()
    with (wheel_dir / cli_services.CLI_MANIFEST_NAME).open("a") as manifest:
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
    cli_services.cli_release_publish(wheel=_fake_wheel(staging, "1.0.0"))
    _fake_wheel(wheel_dir, "2.0.0")  # present but not in the manifest
    secret = tmp_path / "secret.txt"
    secret.write_text("not for download")
    link = wheel_dir / "passport_portal-3.0.0-py3-none-any.whl"
    link.symlink_to(secret)
    with (wheel_dir / cli_services.CLI_MANIFEST_NAME).open("a") as manifest:
        manifest.write(f"{hashlib.sha256(secret.read_bytes()).hexdigest()}  {link.name}\n")

    assert client.get("/cli/releases/passport_portal-1.0.0-py3-none-any.whl").status_code == 200
    for attempt in (
        "/cli/releases/passport_portal-2.0.0-py3-none-any.whl",
        f"/cli/releases/{link.name}",
        "/cli/releases/SHA256SUMS",
        "/cli/releases/..%2Fsecret.txt",
        "/cli/releases/%2e%2e%2f%2e%2e%2fsettings.py",
        "/cli/releases/../../passport_portal/settings.py",
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
    with pytest.raises(cli_services.CliReleaseError, match="not a passport CLI wheel"):
        cli_services.cli_release_publish(wheel=stray)
    assert not wheel_dir.exists()


def test_build_cli_wheel_publishes_the_current_tree(wheel_dir: Path, client: Client) -> None:
    call_command("build_cli_wheel")
    name = f"passport_portal-{passport_cli.__version__}-py3-none-any.whl"
    wheel = wheel_dir / name
    manifest = (wheel_dir / cli_services.CLI_MANIFEST_NAME).read_text()
    assert manifest == f"{hashlib.sha256(wheel.read_bytes()).hexdigest()}  {name}\n"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(f"passport_portal-{passport_cli.__version__}.dist-info/entry_points.txt")
    assert "passport_cli/main.py" in names and "ssmchannel/link.py" in names
    assert not any(name.startswith(("accounts/", "tests/")) or "__pycache__" in name for name in names)
    assert b"passport = passport_cli.main:main" in entry_points
    assert client.get("/api/cli/releases/").json()["latest"] == passport_cli.__version__


def test_build_cli_wheel_refuses_a_version_mismatch(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "pyproject.toml").write_text((root / "pyproject.toml").read_text())
    (tree / "passport_cli").mkdir()
    (tree / "passport_cli" / "__init__.py").write_text('__version__ = "4.5.6"\n')
    (tree / "ssmchannel").mkdir()
    (tree / "ssmchannel" / "__init__.py").write_text("")
    with pytest.raises(CommandError, match=r"passport_cli.__version__ is 4\.5\.6"):
        call_command("build_cli_wheel", source=tree, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
