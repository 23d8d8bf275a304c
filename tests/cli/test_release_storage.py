"""Published CLI wheels in the shared "cli_wheels" storage (devcloud's S3): a wheel published from
one host is listed and served by another web process whose own disk has none."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.test import Client

from accounts import cli_releases
from tests.stack import Cloud
from tests.terminal.storage_helpers import s3_recordings

pytestmark = pytest.mark.django_db


@pytest.fixture
def wheel_bucket(aws: Cloud, settings: Any, tmp_path: Path) -> str:
    bucket = f"wheels-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=aws.endpoint_url, region_name="us-east-1").create_bucket(Bucket=bucket)
    storage = s3_recordings(aws.endpoint_url, bucket)
    storage["OPTIONS"]["location"] = "cli-wheels"
    settings.STORAGES = {**settings.STORAGES, "cli_wheels": storage}
    settings.PASSPORT_CLI_WHEEL_DIR = tmp_path / "disk-of-web-1"
    return bucket


def test_a_wheel_published_on_one_host_is_listed_and_served_by_another(
    wheel_bucket: str, aws: Cloud, settings: Any, tmp_path: Path, client: Client
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    wheel = staging / "passport_portal-3.1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel 3.1.0 " * 100)
    release = cli_releases.cli_release_publish(wheel=wheel)
    assert release.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()

    s3 = boto3.client("s3", endpoint_url=aws.endpoint_url, region_name="us-east-1")
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=wheel_bucket)["Contents"]}
    assert keys == {"cli-wheels/SHA256SUMS", f"cli-wheels/{wheel.name}"}
    assert not (tmp_path / "disk-of-web-1").exists()  # nothing on this host's disk

    # Another web process: its own, empty disk; the same bucket.
    settings.PASSPORT_CLI_WHEEL_DIR = tmp_path / "disk-of-web-2"
    index = client.get("/api/cli/releases/").json()
    assert index["latest"] == "3.1.0"
    assert [(item["filename"], item["sha256"], item["size"]) for item in index["releases"]] == [
        (wheel.name, release.sha256, len(wheel.read_bytes()))
    ]
    download = client.get(f"/cli/releases/{wheel.name}")
    assert download.status_code == 200
    assert download.getvalue() == wheel.read_bytes()

    # A second wheel keeps the first in the manifest; a name the manifest lacks is a 404.
    newer = staging / "passport_portal-3.2.0-py3-none-any.whl"
    newer.write_bytes(b"wheel 3.2.0")
    cli_releases.cli_release_publish(wheel=newer)
    assert [item["version"] for item in client.get("/api/cli/releases/").json()["releases"]] == ["3.2.0", "3.1.0"]
    s3.put_object(Bucket=wheel_bucket, Key="cli-wheels/passport_portal-9.0.0-py3-none-any.whl", Body=b"stray")
    assert client.get("/cli/releases/passport_portal-9.0.0-py3-none-any.whl").status_code == 404
