"""The "recordings" storage (settings.STORAGES): an S3 bucket through django-storages, or local
files on a single host. Objects only, by key; which keys make a recording is terminal.models'
RecordingChunk manifest."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

READ_BLOCK = 1024 * 1024


class StorageUnavailable(Exception):
    """The recordings storage could not be written or read."""


def recording_storage() -> Storage:
    return storages["recordings"]


def recording_prefix_new() -> str:
    """Where a new recording's chunks go: one prefix per terminal, never reused."""
    return f"recordings/{uuid.uuid4()}"


def chunk_key(prefix: str, number: int) -> str:
    return f"{prefix}/chunk-{number:06d}"


def object_put(key: str, data: bytes, *, replace: bool = False) -> None:
    """Store ``data`` under exactly ``key``; ``replace`` first removes what a failed try left there."""
    storage = recording_storage()
    bucket = getattr(storage, "bucket", None)
    if bucket is not None:
        # S3: one PutObject on django-storages' own connection, which replaces whatever a failed
        # try left. (Its save() goes through s3transfer, a thread pool per call: heavy per chunk.)
        location = str(getattr(storage, "location", "") or "").strip("/")
        bucket.put_object(Key=f"{location}/{key}" if location else key, Body=data)
        return
    if replace and storage.exists(key):
        storage.delete(key)
    saved = storage.save(key, ContentFile(data))
    if saved != key:
        # A local storage finding the name taken picks another: that would break the manifest.
        storage.delete(saved)
        raise StorageUnavailable(f"the recordings storage stored {key} as {saved}")


def object_get(key: str) -> bytes:
    with recording_storage().open(key, "rb") as handle:
        data = handle.read()
    return bytes(data)


def object_blocks(key: str) -> Iterator[bytes]:
    """An object's bytes, a block at a time (a large legacy recording is not read whole)."""
    with recording_storage().open(key, "rb") as handle:
        while block := handle.read(READ_BLOCK):
            yield bytes(block)


def object_exists(key: str) -> bool:
    return recording_storage().exists(key)


def storage_probe(prefix: str) -> None:
    """Write and remove a small object under ``prefix``: raises if the storage cannot take a recording."""
    key = f"{prefix}/probe"
    try:
        object_put(key, b"passport recording storage probe\n", replace=True)
        recording_storage().delete(key)
    except Exception as exc:
        raise StorageUnavailable(str(exc) or type(exc).__name__) from exc


def bucket_ensure() -> str:
    """Create the S3 bucket of the recordings storage if it is missing (devcloud, first setup);
    returns what was done. A local storage needs nothing."""
    storage = recording_storage()
    bucket = getattr(storage, "bucket", None)
    if bucket is None:
        return "local storage: nothing to create"
    client = storage.connection.meta.client  # type: ignore[attr-defined]
    try:
        client.head_bucket(Bucket=bucket.name)
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=bucket.name)
        return f"created bucket {bucket.name}"
    return f"bucket {bucket.name} exists"
