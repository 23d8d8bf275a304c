"""Recording storage for tests: devcloud's S3 (moto's server) through django-storages, the way
passport_portal/settings/terminal.py configures it when PASSPORT_RECORDINGS_BUCKET is set."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.config import Config

from terminal.models import TerminalSession
from terminal.recorder import recording_read
from terminal.storage import bucket_ensure, recording_storage


def s3_recordings(endpoint_url: str, bucket: str) -> dict[str, Any]:
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url,
            "region_name": "us-east-1",
            "file_overwrite": True,
            "querystring_auth": False,
            "client_config": Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1}),
        },
    }


def use_s3_recordings(settings: Any, endpoint_url: str, bucket: str | None = None) -> str:
    """Point the "recordings" storage at an S3 bucket (created if missing); returns its name."""
    bucket = bucket or f"recordings-{uuid.uuid4().hex[:12]}"
    settings.STORAGES = {**settings.STORAGES, "recordings": s3_recordings(endpoint_url, bucket)}
    bucket_ensure()
    return bucket


# Nothing listens here: a storage that cannot be reached at all.
UNREACHABLE = "http://127.0.0.1:9"


@contextmanager
def storage_fails_to_read(key_suffix: str) -> Iterator[list[str]]:
    """The S3 recordings storage answers HTTP 500 (InternalError) to every read of an object whose
    key ends with ``key_suffix``, in this thread, until the block ends: a storage blip. Put through
    botocore's own event hooks on the storage's client (the request never leaves), so every line of
    the portal's reading runs as it does against a failing S3. Yields the keys it failed."""
    failed: list[str] = []

    def answer_500(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        key = str(params.get("url_path", ""))  # the request as serialised: /<bucket>/<key>
        if not key.endswith(key_suffix):
            return None
        failed.append(key)
        parsed = {
            "Error": {"Code": "InternalError", "Message": "We encountered an internal error. Please try again."},
            "ResponseMetadata": {"HTTPStatusCode": 500},
        }
        return AWSResponse("https://s3.invalid/", 500, {}, None), parsed

    storage: Any = recording_storage()
    # django-storages reads through its bucket (made on whichever thread first asked) and does the
    # rest on this thread's connection: both clients answer.
    hooks = {
        id(events): events
        for events in (storage.bucket.meta.client.meta.events, storage.connection.meta.client.meta.events)
    }
    names = ("before-call.s3.HeadObject", "before-call.s3.GetObject")
    for events in hooks.values():
        for name in names:
            events.register(name, answer_500, unique_id=f"storage-blip-{name}")
    try:
        yield failed
    finally:
        for events in hooks.values():
            for name in names:
                events.unregister(name, unique_id=f"storage-blip-{name}")


def recording_bytes(session: TerminalSession) -> bytes:
    """What is kept of a recording, joined (terminal.recorder gives it a chunk at a time)."""
    _, chunks = recording_read(session)
    return b"".join(chunks)


@contextmanager
def storage_is_slow(seconds: float) -> Iterator[list[str]]:
    """Every object the S3 recordings storage is given takes ``seconds`` longer to store, from any
    thread, until the block ends: a slow S3. The request still goes to devcloud's S3 and is stored;
    the wait is put before it through botocore's event hooks on the storage's bucket client, the
    one the upload threads store chunks with (terminal.storage.object_put). Yields the keys slowed."""
    slowed: list[str] = []

    def wait(params: dict[str, Any], **_: Any) -> None:
        slowed.append(str(params.get("url_path", "")))
        time.sleep(seconds)

    storage: Any = recording_storage()
    events = storage.bucket.meta.client.meta.events
    events.register("before-call.s3.PutObject", wait, unique_id="storage-slow")
    try:
        yield slowed
    finally:
        events.unregister("before-call.s3.PutObject", unique_id="storage-slow")
