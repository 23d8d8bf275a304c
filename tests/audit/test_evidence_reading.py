"""Reading every checkpoint in the evidence bucket (devcloud's S3): many GETs in flight at once,
yet the objects come in the listing's order, a bounded number ahead of the caller, and an object
that cannot be read fails the run where reading them one at a time failed it.

The latency of real S3 (5-20 ms a GET) is put in front of each GetObject by a handler on
botocore's own events (``before-send``), on the default boto3 session the reader's client comes from.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from django.conf import settings

from audit.anchor.checkpoints import logbook_checkpoint_write
from audit.anchor.storage import EvidenceStoreError, evidence_read_all
from tests.audit.anchoring import verify_code
from tests.audit.conftest import append_many

pytestmark = pytest.mark.django_db


class S3Watch:
    """Counts the reader's requests and how many GETs were in flight at once; delays each GET."""

    def __init__(self, delay_ms: int) -> None:
        self.delay_ms = delay_ms
        self.lock = threading.Lock()
        self.started = self.in_flight = self.most_in_flight = self.listings = 0

    def before_get(self, request: Any, **_: Any) -> None:
        with self.lock:
            self.started += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.delay_ms:
            # 0 to delay_ms, fixed per object: later objects often finish first.
            time.sleep((zlib.crc32(request.url.encode()) % (self.delay_ms + 1)) / 1000)

    def after_get(self, **_: Any) -> None:
        with self.lock:
            self.in_flight -= 1

    def before_list(self, **_: Any) -> None:
        with self.lock:
            self.listings += 1


def _watch(monkeypatch: pytest.MonkeyPatch, *, delay_ms: int = 0) -> S3Watch:
    watch = S3Watch(delay_ms)
    session = boto3.Session()
    session.events.register("before-send.s3.GetObject", watch.before_get)
    session.events.register("after-call.s3.GetObject", watch.after_get)
    session.events.register("before-send.s3.ListObjectVersions", watch.before_list)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    return watch


def _put(evidence: Any, key: str, body: bytes, **extra: Any) -> None:
    evidence.put_object(
        Bucket=settings.PASSPORT_EVIDENCE_BUCKET, Key=key, Body=body, ChecksumAlgorithm="SHA256", **extra
    )


def _put_many(evidence: Any, keys: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: _put(evidence, key, f"body of {key}".encode()), keys))


def _listed(evidence: Any, prefix: str) -> list[tuple[str, str]]:
    """Every version under ``prefix`` in the order S3 lists them (delete markers are not versions)."""
    pages = evidence.get_paginator("list_object_versions").paginate(
        Bucket=settings.PASSPORT_EVIDENCE_BUCKET, Prefix=prefix
    )
    return [(version["Key"], version["VersionId"]) for page in pages for version in page.get("Versions", [])]


def _readers_alive() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("evidence-read")]


def test_many_objects_come_in_the_listing_order_with_gets_in_flight_at_once(
    evidence: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More than one page of the listing (1,000 a page), a key with two versions and one deleted.
    prefix = settings.PASSPORT_EVIDENCE_PREFIX
    keys = [f"{prefix}{number:015d}-x.json" for number in range(1030)]
    _put_many(evidence, keys)
    _put(evidence, keys[3], b"second version")
    evidence.delete_object(Bucket=settings.PASSPORT_EVIDENCE_BUCKET, Key=keys[5])  # a marker: version kept
    expected = _listed(evidence, prefix)
    assert len(expected) == 1031

    settings.PASSPORT_EVIDENCE_READ_CONCURRENCY = 8
    watch = _watch(monkeypatch, delay_ms=6)
    read, started_when_given = [], []
    for stored in evidence_read_all(prefix):
        started_when_given.append(watch.started)
        read.append(stored)

    assert [(stored.key, stored.version_id) for stored in read] == expected
    bodies = {(stored.key, stored.body) for stored in read}
    assert (keys[3], b"second version") in bodies and (keys[3], f"body of {keys[3]}".encode()) in bodies
    assert all(stored.body in {f"body of {stored.key}".encode(), b"second version"} for stored in read)
    assert watch.started == len(expected)
    assert 1 < watch.most_in_flight <= 8  # one at a time before
    # Bounded read-ahead: when the caller gets its n-th object, at most 4 x 8 more have been asked for.
    assert all(started <= given + 1 + 4 * 8 for given, started in enumerate(started_when_given))
    assert _readers_alive() == []


@pytest.mark.parametrize("concurrency", [1, 6])
def test_an_unreadable_object_fails_the_read_after_every_object_before_it(
    evidence: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, concurrency: int
) -> None:
    # A lifecycle rule moved one checkpoint to Glacier: listed, but its GET is refused.
    prefix = settings.PASSPORT_EVIDENCE_PREFIX
    keys = [f"{prefix}{number:015d}-x.json" for number in range(60)]
    _put_many(evidence, keys[:23] + keys[24:])
    _put(evidence, keys[23], b"archived", StorageClass="GLACIER")
    assert [key for key, _ in _listed(evidence, prefix)] == keys

    settings.PASSPORT_EVIDENCE_READ_CONCURRENCY = concurrency
    watch = _watch(monkeypatch, delay_ms=4)
    given: list[str] = []
    with pytest.raises(EvidenceStoreError, match=r"Reading the evidence bucket failed: .*InvalidObjectState"):
        for stored in evidence_read_all(prefix):
            given.append(stored.key)
    assert given == keys[:23]  # every one before it, none after: as when they were read one at a time
    assert watch.started <= 23 + 1 + 4 * concurrency
    assert _readers_alive() == []  # no GET left running, nothing waiting on a result

    code, said = verify_code()
    assert code == 1, said
    assert "Logbook NOT checked: Reading the evidence bucket failed" in said and "InvalidObjectState" in said


def test_a_caller_that_stops_early_leaves_no_reader_running(
    evidence: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = settings.PASSPORT_EVIDENCE_PREFIX
    keys = [f"{prefix}{number:015d}-x.json" for number in range(120)]
    _put_many(evidence, keys)
    settings.PASSPORT_EVIDENCE_READ_CONCURRENCY = 4
    watch = _watch(monkeypatch, delay_ms=4)
    reader: Iterator[Any] = evidence_read_all(prefix)
    assert [next(reader).key for _ in range(3)] == keys[:3]
    reader.close()  # type: ignore[attr-defined]
    assert _readers_alive() == []
    assert watch.started <= 3 + 4 * 4


def test_a_verification_reads_each_checkpoint_once(evidence: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The coverage, the gaps and the entries' times all check the same checkpoints: one read for all.
    for _ in range(3):
        append_many(2)
        assert logbook_checkpoint_write(reason="periodic", force=True) is not None
    watch = _watch(monkeypatch)
    code, said = verify_code()
    assert code == 0, said
    assert "3 checkpoint(s)" in said
    assert (watch.started, watch.listings) == (3, 1)
