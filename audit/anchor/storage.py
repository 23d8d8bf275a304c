"""The evidence bucket: S3 with Object Lock, so a checkpoint once written stays.

Every object is written with COMPLIANCE-mode retention for PASSPORT_EVIDENCE_RETENTION_DAYS:
until then no one, the bucket's owner included, can delete that version or shorten its
retention. A plain DELETE only adds a delete marker and a PUT to the same key only adds a
version, so the reader lists every version, not just the latest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils import timezone

_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=30)


class EvidenceStoreError(RuntimeError):
    """The bucket cannot be reached or refused what was asked."""


def evidence_enabled() -> bool:
    return bool(settings.PASSPORT_EVIDENCE_BUCKET)


def _client() -> Any:
    return boto3.client(
        "s3", region_name=settings.AWS_REGION, endpoint_url=settings.AWS_ENDPOINT_URL or None, config=_CONFIG
    )


def _bucket() -> str:
    return str(settings.PASSPORT_EVIDENCE_BUCKET)


def evidence_bucket_ensure() -> str:
    """Create the bucket with Object Lock when it is missing; refuse one without Object Lock."""
    client = _client()
    bucket = _bucket()
    try:
        try:
            client.head_bucket(Bucket=bucket)
            created = False
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket", "NotFound"}:
                raise
            arguments: dict[str, Any] = {"Bucket": bucket, "ObjectLockEnabledForBucket": True}
            if settings.AWS_REGION != "us-east-1":
                arguments["CreateBucketConfiguration"] = {"LocationConstraint": settings.AWS_REGION}
            client.create_bucket(**arguments)
            created = True
        try:
            configuration = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        except ClientError:
            configuration = {}
        if configuration.get("ObjectLockEnabled") != "Enabled":
            raise EvidenceStoreError(
                f"The bucket {bucket!r} exists without Object Lock; it cannot keep evidence. "
                "Object Lock is chosen when a bucket is created: use a new bucket."
            )
    except (BotoCoreError, ClientError) as error:
        raise EvidenceStoreError(f"The evidence bucket {bucket!r}: {error}") from error
    return "created" if created else "exists"


def retain_until(now: datetime) -> datetime:
    return now + timedelta(days=settings.PASSPORT_EVIDENCE_RETENTION_DAYS)


def evidence_put(key: str, body: bytes) -> str:
    """Write one object under COMPLIANCE retention; its version id."""
    try:
        response = _client().put_object(
            Bucket=_bucket(),
            Key=key,
            Body=body,
            ContentType="application/json",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=retain_until(timezone.now()),
            ChecksumAlgorithm="SHA256",
        )
    except (BotoCoreError, ClientError) as error:
        raise EvidenceStoreError(f"Writing {key!r} to the evidence bucket failed: {error}") from error
    return str(response.get("VersionId") or "")


@dataclass(frozen=True)
class StoredObject:
    key: str
    version_id: str
    body: bytes


def evidence_exists(prefix: str, *, after: str = "") -> bool:
    """Whether the bucket holds any object under ``prefix`` (whose key sorts after ``after``, if given)."""
    try:
        listed = _client().list_objects_v2(Bucket=_bucket(), Prefix=prefix, MaxKeys=1, StartAfter=after)
    except (BotoCoreError, ClientError) as error:
        raise EvidenceStoreError(f"Reading the evidence bucket failed: {error}") from error
    return bool(listed.get("KeyCount") or listed.get("Contents"))


def evidence_read_all(prefix: str) -> Iterator[StoredObject]:
    """Every version of every object under ``prefix``, delete markers skipped."""
    client = _client()
    try:
        for page in client.get_paginator("list_object_versions").paginate(Bucket=_bucket(), Prefix=prefix):
            for version in page.get("Versions", []):
                body = client.get_object(Bucket=_bucket(), Key=version["Key"], VersionId=version["VersionId"])[
                    "Body"
                ].read()
                yield StoredObject(key=version["Key"], version_id=version["VersionId"], body=body)
    except (BotoCoreError, ClientError) as error:
        raise EvidenceStoreError(f"Reading the evidence bucket failed: {error}") from error
