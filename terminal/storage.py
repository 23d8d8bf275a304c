"""The "recordings" storage (settings.STORAGES): an S3 bucket through django-storages, or local
files on a single host. Objects only, by key; which keys make a recording is terminal.models'
RecordingChunk manifest.

The bucket keeps versions under Object Lock (``bucket_ensure``): a DELETE by the portal's own
credentials only hides an object behind a delete marker, and every version stays for
PASSPORT_RECORDINGS_RETENTION_DAYS. A read still answers "no such key" for a hidden object:
``ObjectGone``, told apart from a storage that failed to answer.

Object Lock still lets anyone who may write put a new current version over a key: so a chunk is
read back by the VersionId S3 gave when it was stored (``object_put``, kept in its manifest row),
never by whatever its key holds now. Local files have no versions (an empty VersionId: read by key).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages

READ_BLOCK = 1024 * 1024
# A recording made before chunks is one file, ``recordings/YYYY/MM/DD/grant-….cast``; a chunked
# one is a prefix, ``recordings/<uuid>``, with its chunks under it.
LEGACY_SUFFIX = ".cast"


class StorageUnavailable(Exception):
    """The recordings storage could not be written or read."""


class ObjectGone(Exception):
    """The storage answered, and said this object does not exist (S3 404 / NoSuchKey, no such file)."""


def _is_gone(exc: BaseException) -> bool:
    if isinstance(exc, FileNotFoundError):  # local files; django-storages' S3 open() on a 404 HEAD
        return True
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        # Not NoSuchBucket: a wrong or missing bucket is a storage failure, not one recording's loss.
        return code in {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
    return False


def recording_path_is_chunked(path: str) -> bool:
    """Whether a session's ``recording_path`` names chunks (a prefix), not one legacy file."""
    return bool(path) and not path.endswith(LEGACY_SUFFIX)


def recording_storage() -> Storage:
    return storages["recordings"]


def recording_prefix_new() -> str:
    """Where a new recording's chunks go: one prefix per terminal, never reused."""
    return f"recordings/{uuid.uuid4()}"


def chunk_key(prefix: str, number: int) -> str:
    return f"{prefix}/chunk-{number:06d}"


def _s3_key(storage: Storage, key: str) -> str:
    location = str(getattr(storage, "location", "") or "").strip("/")
    return f"{location}/{key}" if location else key


def object_put(key: str, data: bytes, *, replace: bool = False) -> str:
    """Store ``data`` under exactly ``key``; ``replace`` first removes what a failed try left there.
    Returns the S3 VersionId of what was stored ("" for local files, or a bucket without versioning)."""
    storage = recording_storage()
    bucket = getattr(storage, "bucket", None)
    if bucket is not None:
        # S3: one PutObject on django-storages' own connection, which replaces whatever a failed
        # try left. (Its save() goes through s3transfer, a thread pool per call: heavy per chunk.)
        stored = bucket.meta.client.put_object(Bucket=bucket.name, Key=_s3_key(storage, key), Body=data)
        version = str(stored.get("VersionId") or "")
        return "" if version == "null" else version  # "null": a bucket that never had versioning
    if replace and storage.exists(key):
        storage.delete(key)
    saved = storage.save(key, ContentFile(data))
    if saved != key:
        # A local storage finding the name taken picks another: that would break the manifest.
        storage.delete(saved)
        raise StorageUnavailable(f"the recordings storage stored {key} as {saved}")
    return ""


def _version_read(storage: Storage, key: str, version_id: str) -> bytes:
    bucket = getattr(storage, "bucket", None)
    if bucket is None:
        raise StorageUnavailable(f"{key} was stored with an S3 VersionId, and the recordings storage is not S3")
    answer = bucket.meta.client.get_object(Bucket=bucket.name, Key=_s3_key(storage, key), VersionId=version_id)
    return bytes(answer["Body"].read())


def object_get(key: str, version_id: str = "") -> bytes:
    """An object's bytes (``version_id``: that version of it, whatever the key holds now); ``ObjectGone``
    when storage says there is no such object or version, anything else raised as the storage raised
    it (a timeout, a 5xx, access denied)."""
    try:
        storage = recording_storage()
        if version_id:
            return _version_read(storage, key, version_id)
        with storage.open(key, "rb") as handle:
            data = handle.read()
    except Exception as exc:
        if _is_gone(exc):
            raise ObjectGone(key) from exc
        raise
    return bytes(data)


def object_blocks(key: str) -> Iterator[bytes]:
    """An object's bytes, a block at a time (a large legacy recording is not read whole); raises as
    ``object_get`` does."""
    try:
        with recording_storage().open(key, "rb") as handle:
            while block := handle.read(READ_BLOCK):
                yield bytes(block)
    except Exception as exc:
        if _is_gone(exc):
            raise ObjectGone(key) from exc
        raise


def object_exists(key: str) -> bool:
    return recording_storage().exists(key)


def object_names(prefix: str) -> set[str]:
    """The keys of every object directly under ``prefix`` (one LIST per 1,000 on S3; no bytes read).
    Raises StorageUnavailable when the storage cannot say."""
    try:
        _folders, files = recording_storage().listdir(prefix)
    except FileNotFoundError:
        return set()  # a local storage with no such directory
    except Exception as exc:
        raise StorageUnavailable(f"listing {prefix}: {exc or type(exc).__name__}") from exc
    return {f"{prefix}/{name}" for name in files}


def storage_probe(prefix: str) -> None:
    """Write and remove a small object under ``prefix``: raises if the storage cannot take a recording."""
    key = f"{prefix}/probe"
    try:
        object_put(key, b"passport recording storage probe\n", replace=True)
        recording_storage().delete(key)
    except Exception as exc:
        raise StorageUnavailable(str(exc) or type(exc).__name__) from exc


def _lock_wanted() -> dict[str, Any]:
    retention = {
        "Mode": settings.PASSPORT_RECORDINGS_RETENTION_MODE,
        "Days": settings.PASSPORT_RECORDINGS_RETENTION_DAYS,
    }
    return {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": retention}}


def _lock_current(client: Any, bucket: str) -> dict[str, Any]:
    try:
        return dict(client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
            return {}
        raise


def _lock_matches(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    if current.get("ObjectLockEnabled") != "Enabled":
        return False
    have = current.get("Rule", {}).get("DefaultRetention", {})
    want = wanted["Rule"]["DefaultRetention"]
    # AWS answers Days or Years; moto answers both (Years 0).
    return have.get("Mode") == want["Mode"] and have.get("Days") == want["Days"] and not have.get("Years")


def bucket_ensure() -> str:
    """Make the S3 bucket of the recordings storage keep what it is given: created with Object
    Lock if missing; otherwise versioning turned on and Object Lock with the default retention
    (PASSPORT_RECORDINGS_RETENTION_MODE for PASSPORT_RECORDINGS_RETENTION_DAYS) set where it
    differs. Returns what was done; raises StorageUnavailable naming what the bucket refused.
    A local storage needs nothing (and has none of this)."""
    storage = recording_storage()
    bucket = getattr(storage, "bucket", None)
    if bucket is None:
        return "local storage: nothing to create (local files have no versioning or Object Lock)"
    client = storage.connection.meta.client  # type: ignore[attr-defined]
    name = bucket.name
    wanted = _lock_wanted()
    done: list[str] = []
    step = "reading the bucket"
    try:
        try:
            client.head_bucket(Bucket=name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket", "NotFound"}:
                raise
            step = "creating the bucket with Object Lock"
            arguments: dict[str, Any] = {"Bucket": name, "ObjectLockEnabledForBucket": True}
            region = client.meta.region_name
            if region and region != "us-east-1":
                arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
            client.create_bucket(**arguments)
            done.append(f"created bucket {name}")
        else:
            done.append(f"bucket {name} exists")
        if client.get_bucket_versioning(Bucket=name).get("Status") != "Enabled":
            step = "turning versioning on"
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            done.append("versioning turned on")
        if not _lock_matches(_lock_current(client, name), wanted):
            step = "setting Object Lock and its default retention"
            client.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration=wanted)
            done.append("Object Lock set")
    except (BotoCoreError, ClientError) as error:
        raise StorageUnavailable(f"The recordings bucket {name!r}: {step} failed: {error}") from error
    retention = wanted["Rule"]["DefaultRetention"]
    done.append(f"versioning on, Object Lock {retention['Mode']} for {retention['Days']} day(s)")
    return "; ".join(done)
