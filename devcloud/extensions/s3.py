"""S3 Object Lock as AWS enforces it, where moto 5.2.5 is lenient.

moto already refuses to delete a locked object version. It lets two things through that
AWS refuses, and either would let a "write-once" object go:

- PutObjectRetention that weakens an active retention: AWS never lets COMPLIANCE mode be
  shortened or changed to GOVERNANCE, and lets GOVERNANCE be shortened or removed only with
  ``x-amz-bypass-governance-retention: true``. Both are AccessDenied; lengthening is allowed.
- PutBucketVersioning other than Enabled on a bucket with Object Lock: AWS answers
  InvalidBucketState (Object Lock needs versioning, for good).

And it has no GetObjectRetention (the GET falls through to GetObject and boto3 gets a 500);
devcloud answers it from the version's lock, as AWS does.

It is stricter than AWS in one place: PutObjectLockConfiguration on a bucket that holds objects
("Bucket needs to be empty"). AWS turns Object Lock on for an existing bucket whose versioning
is enabled, whatever it holds, and changes a locked bucket's default retention at any time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.s3.exceptions import AccessDeniedByLock, InvalidBucketState, S3ClientError
from moto.s3.models import FakeKey, S3Backend
from moto.s3.responses import S3Response


def _until(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _weakens(key: FakeKey, mode: str | None, until_text: str | None, *, bypass: bool) -> bool:
    current_until = _until(key.lock_until)
    if key.lock_mode not in {"GOVERNANCE", "COMPLIANCE"} or current_until is None:
        return False
    if current_until <= dt.datetime.now(dt.UTC):
        return False  # the retention has run out: anything goes
    until = _until(until_text)
    shorter = until is None or until < current_until
    if key.lock_mode == "COMPLIANCE":
        return mode != "COMPLIANCE" or shorter
    # GOVERNANCE: moving to COMPLIANCE or lengthening is fine; weakening needs the bypass.
    return not bypass and (mode is None or (mode == "GOVERNANCE" and shorter))


def _retention_guarded(original: Callable[[S3Response], Any]) -> Callable[[S3Response], Any]:
    def put_object_retention(self: S3Response) -> Any:
        bucket = self.backend.get_bucket(self.bucket_name)
        if bucket.object_lock_enabled:
            key = self.backend.get_object(
                self.bucket_name, self.parse_key_name(), version_id=self._get_param("versionId")
            )
            if key is not None:
                mode, until = self._mode_until_from_body()
                bypass = self.headers.get("x-amz-bypass-governance-retention", "").lower() == "true"
                if _weakens(key, mode, until, bypass=bypass):
                    raise AccessDeniedByLock
        return original(self)

    return put_object_retention


def _versioning_kept(original: Callable[..., None]) -> Callable[..., None]:
    def put_bucket_versioning(self: S3Backend, bucket_name: str, status: str) -> None:
        if self.get_bucket(bucket_name).object_lock_enabled and status != "Enabled":
            raise InvalidBucketState(
                "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed."
            )
        original(self, bucket_name, status)

    return put_bucket_versioning


class NoSuchObjectLockConfiguration(S3ClientError):
    def __init__(self) -> None:
        super().__init__(
            "NoSuchObjectLockConfiguration", "The specified object does not have a ObjectLock configuration"
        )


def _retention_readable(original: Callable[..., Any]) -> Callable[..., Any]:
    def key_response_get(self: S3Response, query: dict[str, Any], key_name: str) -> Any:
        if "retention" not in query:
            return original(self, query, key_name)
        self._set_action("KEY", "GET", query)
        self._authenticate_and_authorize_s3_action(bucket_name=self.bucket_name, key_name=key_name)
        key, _not_modified = self._get_key()
        until = _until(key.lock_until)
        if key.lock_mode not in {"GOVERNANCE", "COMPLIANCE"} or until is None:
            raise NoSuchObjectLockConfiguration
        self.data["Action"] = "GetObjectRetention"
        status, headers, body = self.serialized(
            ActionResult({"Retention": {"Mode": key.lock_mode, "RetainUntilDate": until}})
        )
        if key.version_id != "null":
            headers["x-amz-version-id"] = key.version_id
        return status, headers, body

    return key_response_get


def _lock_configurable(self: S3Backend, bucket_name: str, lock_enabled: bool, mode: str | None = None,
                       days: int | None = None, years: int | None = None) -> None:  # fmt: skip
    """PutObjectLockConfiguration as AWS answers it: versioning must be enabled; what the bucket
    holds does not matter. Once on, Object Lock stays on."""
    bucket = self.get_bucket(bucket_name)
    if not bucket.is_versioned:
        raise InvalidBucketState("Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration")
    if lock_enabled:
        bucket.object_lock_enabled = True
        bucket.versioning_status = "Enabled"
    bucket.default_lock_mode = mode
    bucket.default_lock_days = days
    bucket.default_lock_years = years


PATCHES: list[tuple[Any, str, Any]] = [
    (S3Backend, "put_object_lock_configuration", _lock_configurable),
    (S3Response, "_key_response_get", _retention_readable(S3Response._key_response_get)),
    (S3Response, "put_object_retention", _retention_guarded(S3Response.put_object_retention)),
    (S3Backend, "put_bucket_versioning", _versioning_kept(S3Backend.put_bucket_versioning)),
]
