"""terminal.chunks shares a few upload threads (UPLOAD_THREADS) among every terminal of a web process:
one sink's chunks must never keep a thread from the others. Before the fix a sink drained "until none
is waiting", so a terminal whose output kept up with storage (8 CLI proxy sessions running
`cat /dev/urandom`, within one person's PASSPORT_MAX_SESSIONS_PER_PERSON) never handed its thread back:
every other terminal of the process had nothing stored (lost if the process died) and, once
BEHIND_BYTES waited, its output was no longer read. And closing a sink waited for storage with no
bound, on a thread of the default executor (terminal.live_recording's ``_seal``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from terminal import chunks
from terminal.chunks import UPLOAD_THREADS, Chunk, ChunkSink


def test_other_terminals_recording_is_stored_while_one_person_floods(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunks, "BEHIND_BYTES", 512 * 1024)  # the floods' backlog: stored quickly at the end
    stop = threading.Event()
    victim_stored: list[int] = []

    def slow_store(chunk: Chunk, retry: bool) -> None:
        time.sleep(0.05)  # an S3 PUT and the manifest row

    hostile = [ChunkSink(slow_store, max_bytes=64 * 1024, attempts=1) for _ in range(UPLOAD_THREADS)]

    def flood(sink: ChunkSink) -> None:
        # The terminal reads the shell only while its recording is not behind (live_recording).
        while not stop.is_set():
            if sink.behind:
                time.sleep(0.005)
                continue
            sink.write(b"x" * 64 * 1024, 0.0)

    feeders = [threading.Thread(target=flood, args=(sink,), daemon=True) for sink in hostile]
    for feeder in feeders:
        feeder.start()
    try:
        time.sleep(0.3)
        assert all(sink.waiting for sink in hostile)  # every upload thread has a flood to store
        victim = ChunkSink(lambda chunk, retry: victim_stored.append(chunk.number), max_bytes=2**20, attempts=1)
        victim.write(b"$ sudo cat /etc/shadow\r\n", 1.0)
        victim.cut()
        deadline = time.monotonic() + 3
        while not victim_stored and time.monotonic() < deadline:
            time.sleep(0.01)
        stored_in_time = bool(victim_stored)
    finally:
        stop.set()
        for feeder in feeders:
            feeder.join()
        for sink in hostile:
            sink.close()
    victim.close()
    assert stored_in_time, "another person's terminal had nothing stored for 3 s while 8 terminals flooded"
    assert victim_stored == [1]
    assert all(not sink.kept().failure and sink.kept().chunks for sink in hostile)


def test_a_sink_stores_a_chunk_a_turn_yet_never_two_at_once_and_always_in_order() -> None:
    # Each sink hands its thread back after every chunk (to the back of the pool's queue); the next
    # turn starts only once the last ended, so its chunks are still stored one by one, in order.
    lock = threading.Lock()
    running: dict[int, int] = {}
    most: dict[int, int] = {}
    stored: dict[int, list[int]] = {}

    def store_for(index: int) -> Callable[[Chunk, bool], None]:
        def store(chunk: Chunk, retry: bool) -> None:
            with lock:
                running[index] = running.get(index, 0) + 1
                most[index] = max(most.get(index, 0), running[index])
            time.sleep(0.002)
            with lock:
                running[index] -= 1
                stored.setdefault(index, []).append(chunk.number)

        return store

    sinks = [ChunkSink(store_for(index), max_bytes=10**6, attempts=1) for index in range(UPLOAD_THREADS * 2)]
    for number in range(20):
        for sink in sinks:
            sink.write(f'[{number}.0, "o", "x"]\n'.encode(), float(number))
            sink.cut()
    for sink in sinks:
        sink.close()
    assert all(stored[index] == list(range(1, 21)) for index in range(len(sinks)))
    assert set(most.values()) == {1}
    assert all(sink.kept().chunks == 20 and sink.waiting == 0 for sink in sinks)


def test_close_waits_at_most_close_seconds_then_keeps_what_was_stored_as_a_partial_recording() -> None:
    # Storage that does not keep up at the end: close() gives up after close_seconds (the thread that
    # waits is the default executor's, shared with the whole process) and says so; what was stored
    # before stays the recording, and a chunk that lands after the close is not counted in it.
    release = threading.Event()
    stored: list[int] = []

    def stalled(chunk: Chunk, retry: bool) -> None:
        if chunk.number > 1:
            assert release.wait(10)
        stored.append(chunk.number)

    sink = ChunkSink(stalled, max_bytes=10**6, attempts=1, close_seconds=0.2)
    sink.write(b'[0.5, "o", "a"]\n', 0.5)
    sink.cut()
    deadline = time.monotonic() + 10
    while sink.kept().chunks < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    sink.write(b'[1.0, "o", "b"]\n', 1.0)
    sink.cut()
    sink.write(b'[1.5, "o", "c"]\n', 1.5)
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < 2
    kept = sink.kept()
    assert kept.chunks == 1 and kept.seconds == 0.5 and kept.gave_up and kept.failure
    release.set()
    while sink.waiting:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert sink.kept() == kept
    assert stored == [1, 2]  # the one being stored went on; the one after it was never tried


def test_given_up_a_sink_stores_nothing_more_and_closes_at_once() -> None:
    release, started = threading.Event(), threading.Event()
    stored: list[int] = []

    def stalled(chunk: Chunk, retry: bool) -> None:
        started.set()
        assert release.wait(10)
        stored.append(chunk.number)

    sink = ChunkSink(stalled, max_bytes=10**6, attempts=3, backoff=0)
    for number in range(3):
        sink.write(b"x\n", float(number))
        sink.cut()
    assert started.wait(10)
    assert sink.waiting == 6
    sink.give_up()
    assert sink.waiting == 2  # only the chunk being stored still waits
    sink.close()  # no close_seconds, and yet no wait: nothing more will be counted
    release.set()
    deadline = time.monotonic() + 10
    while sink.waiting:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    kept = sink.kept()
    assert kept.chunks == 0 and kept.gave_up and "did not keep up" in kept.failure
    assert stored == [1]
