"""The evidence bucket: S3 with Object Lock, so a checkpoint once written stays.

Every object is written with COMPLIANCE-mode retention for PASSPORT_EVIDENCE_RETENTION_DAYS:
until then no one, the bucket's owner included, can delete that version or shorten its
retention. A plain DELETE only adds a delete marker and a PUT to the same key only adds a
version, so the reader lists every version, not just the latest.

The reader GETs every one of them, and there are many: a heartbeat a minute is about 525,600
objects a year. One at a time, at 5-20 ms a request, that is hours per verification, nearly all
of it waiting on the network; so several GETs are kept in flight at once
(PASSPORT_EVIDENCE_READ_CONCURRENCY).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils import timezone

_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=30)
# How far the reader runs ahead of its caller, in times its concurrency: objects being read or read
# and waiting their turn. Enough that one slow GET does not idle the others; few enough that
# memory stays flat however many objects the bucket holds.
_READ_AHEAD = 4


class EvidenceStoreError(RuntimeError):
    """The bucket cannot be reached or refused what was asked."""


def evidence_enabled() -> bool:
    return bool(settings.PASSPORT_EVIDENCE_BUCKET)


def _client(*, connections: int = 10) -> Any:
    """An S3 client that keeps ``connections`` open for requests made at once (botocore's default: 10;
    past them, each further request opens a connection and throws it away)."""
    config = _CONFIG.merge(Config(max_pool_connections=connections)) if connections > 10 else _CONFIG
    return boto3.client(
        "s3", region_name=settings.AWS_REGION, endpoint_url=settings.AWS_ENDPOINT_URL or None, config=config
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
    """Every version of every object under ``prefix``, delete markers skipped, in the listing's order.

    Up to PASSPORT_EVIDENCE_READ_CONCURRENCY GETs run at once, in threads sharing one client
    (boto3's clients are thread-safe; creating them is not, and costs), and no more than
    ``_READ_AHEAD`` times as many objects are read ahead of the caller, so a year of checkpoints
    is never in memory at once. What fails is raised where reading one by one raised it: after
    every object listed before it, and before any after it (EvidenceStoreError for S3's own
    errors). Stopping early, or a failure, cancels the GETs not yet started and waits for those
    under way (each bounded by the client's timeouts), so no thread outlives the call.
    """
    workers = max(1, int(settings.PASSPORT_EVIDENCE_READ_CONCURRENCY))
    client = _client(connections=workers + 1)  # and the listing's
    bucket = _bucket()

    def read(key: str, version_id: str) -> StoredObject:
        body = client.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read()
        return StoredObject(key=key, version_id=version_id, body=body)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="evidence-read")
    pending: deque[Future[StoredObject]] = deque()
    try:
        listed = _versions(client, bucket, prefix)
        listing_failure: BaseException | None = None
        while True:
            try:
                key, version_id = next(listed)
            except StopIteration:
                break
            except (BotoCoreError, ClientError) as error:
                listing_failure = error  # raised once the objects listed before it are given
                break
            pending.append(pool.submit(read, key, version_id))
            if len(pending) >= workers * _READ_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        if listing_failure is not None:
            raise listing_failure
    except (BotoCoreError, ClientError) as error:
        raise EvidenceStoreError(f"Reading the evidence bucket failed: {error}") from error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _versions(client: Any, bucket: str, prefix: str) -> Iterator[tuple[str, str]]:
    """The key and version id of every version under ``prefix``, page by page as listed."""
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            yield version["Key"], version["VersionId"]
