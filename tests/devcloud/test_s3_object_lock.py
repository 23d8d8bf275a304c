"""devcloud's S3 keeps Object Lock as AWS does: a version under COMPLIANCE retention stays."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.devcloud.helpers import Aws


@pytest.fixture
def locked(aws: Aws) -> tuple[Any, str, str]:
    """A bucket with Object Lock and one object version under a day of COMPLIANCE retention."""
    s3 = aws.client("s3")
    bucket = f"evidence-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    version = s3.put_object(
        Bucket=bucket,
        Key="checkpoint.json",
        Body=b"the head",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
        ChecksumAlgorithm="SHA256",
    )["VersionId"]
    return s3, bucket, version


def _refused(code: str, call: Any, **arguments: Any) -> None:
    with pytest.raises(ClientError) as refused:
        call(**arguments)
    assert refused.value.response["Error"]["Code"] == code


def test_a_bucket_made_with_object_lock_says_so(locked: tuple[Any, str, str]) -> None:
    s3, bucket, _version = locked
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_a_locked_version_cannot_be_deleted(locked: tuple[Any, str, str]) -> None:
    s3, bucket, version = locked
    _refused("AccessDenied", s3.delete_object, Bucket=bucket, Key="checkpoint.json", VersionId=version)
    _refused(
        "AccessDenied",
        s3.delete_object,
        Bucket=bucket,
        Key="checkpoint.json",
        VersionId=version,
        BypassGovernanceRetention=True,
    )
    errors = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "checkpoint.json", "VersionId": version}]})
    assert [error["Code"] for error in errors["Errors"]] == ["AccessDenied"]
    assert s3.get_object(Bucket=bucket, Key="checkpoint.json", VersionId=version)["Body"].read() == b"the head"


def test_a_plain_delete_or_overwrite_only_hides_the_locked_version(locked: tuple[Any, str, str]) -> None:
    s3, bucket, version = locked
    s3.delete_object(Bucket=bucket, Key="checkpoint.json")  # a delete marker, as on AWS
    s3.put_object(Bucket=bucket, Key="checkpoint.json", Body=b"forged", ChecksumAlgorithm="SHA256")
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert version in {item["VersionId"] for item in versions}
    assert s3.get_object(Bucket=bucket, Key="checkpoint.json", VersionId=version)["Body"].read() == b"the head"


def test_compliance_retention_cannot_be_shortened_or_downgraded(locked: tuple[Any, str, str]) -> None:
    s3, bucket, version = locked
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    for mode in ("COMPLIANCE", "GOVERNANCE"):
        _refused(
            "AccessDenied",
            s3.put_object_retention,
            Bucket=bucket,
            Key="checkpoint.json",
            VersionId=version,
            Retention={"Mode": mode, "RetainUntilDate": soon},
        )
    retention = s3.get_object_retention(Bucket=bucket, Key="checkpoint.json", VersionId=version)["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    assert retention["RetainUntilDate"] > dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)
    _refused("AccessDenied", s3.delete_object, Bucket=bucket, Key="checkpoint.json", VersionId=version)


def test_compliance_retention_may_be_lengthened(locked: tuple[Any, str, str]) -> None:
    s3, bucket, version = locked
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    s3.put_object_retention(
        Bucket=bucket,
        Key="checkpoint.json",
        VersionId=version,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later},
    )
    retention = s3.get_object_retention(Bucket=bucket, Key="checkpoint.json", VersionId=version)["Retention"]
    assert retention["RetainUntilDate"] > dt.datetime.now(dt.UTC) + dt.timedelta(days=2)


def test_governance_retention_is_weakened_only_with_the_bypass(aws: Aws) -> None:
    s3 = aws.client("s3")
    bucket = f"evidence-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    version = s3.put_object(
        Bucket=bucket,
        Key="k",
        Body=b"x",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
        ChecksumAlgorithm="SHA256",
    )["VersionId"]
    soon = {"Mode": "GOVERNANCE", "RetainUntilDate": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)}
    _refused("AccessDenied", s3.put_object_retention, Bucket=bucket, Key="k", VersionId=version, Retention=soon)
    s3.put_object_retention(Bucket=bucket, Key="k", VersionId=version, Retention=soon, BypassGovernanceRetention=True)


def test_versioning_stays_on_under_object_lock(locked: tuple[Any, str, str]) -> None:
    s3, bucket, _version = locked
    _refused(
        "InvalidBucketState",
        s3.put_bucket_versioning,
        Bucket=bucket,
        VersioningConfiguration={"Status": "Suspended"},
    )
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_an_object_without_retention_says_so(aws: Aws) -> None:
    s3 = aws.client("s3")
    bucket = f"evidence-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x", ChecksumAlgorithm="SHA256")
    _refused("NoSuchObjectLockConfiguration", s3.get_object_retention, Bucket=bucket, Key="plain")
    assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == b"x"


def test_object_lock_goes_on_an_existing_versioned_bucket_that_holds_objects(aws: Aws) -> None:
    """AWS turns Object Lock on for an existing bucket once its versioning is enabled, whatever it
    holds (moto refuses a bucket that is not empty), and its default retention then applies."""
    s3 = aws.client("s3")
    bucket = f"recordings-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="old.cast", Body=b"written before")
    lock = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}
    _refused("InvalidBucketState", s3.put_object_lock_configuration, Bucket=bucket, ObjectLockConfiguration=lock)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=lock)
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"
    new = s3.put_object(Bucket=bucket, Key="new.cast", Body=b"written after")["VersionId"]
    assert s3.get_object_retention(Bucket=bucket, Key="new.cast", VersionId=new)["Retention"]["Mode"] == "GOVERNANCE"
    # The default retention of a locked bucket that holds objects may change later, as in AWS.
    lock["Rule"]["DefaultRetention"] = {"Mode": "COMPLIANCE", "Days": 2}
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=lock)
    rule = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]["Rule"]
    assert rule["DefaultRetention"]["Mode"] == "COMPLIANCE"
