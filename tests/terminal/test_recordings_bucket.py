"""manage.py ensure_recordings_bucket: the recordings bucket keeps versions under Object Lock, with
the configured default retention, on devcloud's S3 (which enforces Object Lock as AWS does)."""

from __future__ import annotations

import uuid
from io import StringIO
from typing import Any

import boto3
import pytest
from django.core.management import call_command

from terminal.storage import object_put, recording_storage
from tests.stack import Cloud
from tests.terminal.storage_helpers import s3_recordings


@pytest.fixture
def s3(aws: Cloud) -> Any:
    return boto3.client("s3", endpoint_url=aws.endpoint_url, region_name="us-east-1")


def _point_at(settings: Any, aws: Cloud, bucket: str) -> None:
    settings.STORAGES = {**settings.STORAGES, "recordings": s3_recordings(aws.endpoint_url, bucket)}


def _ensure() -> str:
    out = StringIO()
    call_command("ensure_recordings_bucket", stdout=out)
    return out.getvalue()


def _lock(s3: Any, bucket: str) -> dict[str, Any]:
    return dict(s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"])


def test_a_new_bucket_keeps_every_chunk_under_retention(s3: Any, aws: Cloud, settings: Any) -> None:
    bucket = f"rec-{uuid.uuid4().hex[:12]}"
    _point_at(settings, aws, bucket)
    settings.PASSPORT_RECORDINGS_RETENTION_DAYS = 3
    said = _ensure()
    assert f"created bucket {bucket}" in said and "Object Lock COMPLIANCE for 3 day(s)" in said
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    lock = _lock(s3, bucket)
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE" and lock["Rule"]["DefaultRetention"]["Days"] == 3

    object_put("recordings/x/chunk-000001", b"kept")
    assert s3.get_object_retention(Bucket=bucket, Key="recordings/x/chunk-000001")["Retention"]["Mode"] == "COMPLIANCE"
    recording_storage().delete("recordings/x/chunk-000001")  # what the portal's credentials can do: hide it
    version = s3.list_object_versions(Bucket=bucket, Prefix="recordings/x/")["Versions"][0]
    with pytest.raises(Exception, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key="recordings/x/chunk-000001", VersionId=version["VersionId"])
    body = s3.get_object(Bucket=bucket, Key="recordings/x/chunk-000001", VersionId=version["VersionId"])["Body"]
    assert body.read() == b"kept"

    # Again, unchanged settings: nothing to change; a longer retention is set on the bucket
    # that now holds chunks, as AWS takes it.
    assert "exists" in _ensure() and "Object Lock set" not in _ensure()
    settings.PASSPORT_RECORDINGS_RETENTION_DAYS = 5
    assert "Object Lock COMPLIANCE for 5 day(s)" in _ensure()
    assert _lock(s3, bucket)["Rule"]["DefaultRetention"]["Days"] == 5


def test_an_existing_plain_bucket_gets_versioning_and_object_lock(s3: Any, aws: Cloud, settings: Any) -> None:
    bucket = f"rec-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)  # made before this version of the portal, never written to
    _point_at(settings, aws, bucket)
    settings.PASSPORT_RECORDINGS_RETENTION_MODE = "GOVERNANCE"
    said = _ensure()
    assert "versioning turned on" in said and "Object Lock set" in said
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert _lock(s3, bucket)["Rule"]["DefaultRetention"]["Mode"] == "GOVERNANCE"


def test_an_existing_bucket_holding_recordings_gets_versioning_and_object_lock(
    s3: Any, aws: Cloud, settings: Any
) -> None:
    bucket = f"rec-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="recordings/old/chunk-000001", Body=b"old")
    _point_at(settings, aws, bucket)
    said = _ensure()
    assert "versioning turned on" in said and "Object Lock set" in said
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert _lock(s3, bucket)["ObjectLockEnabled"] == "Enabled"
