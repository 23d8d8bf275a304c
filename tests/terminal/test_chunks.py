"""terminal.chunks: a recording cut into chunks, stored in order off the caller's thread, retried,
and never stored past a chunk that was lost."""

from __future__ import annotations

import hashlib
import threading
import time

from terminal.chunks import BEHIND_BYTES, Chunk, ChunkSink
from terminal.recording import AsciicastWriter


class Store:
    def __init__(self, *, fail_numbers: dict[int, int] | None = None) -> None:
        # chunk number -> how many tries fail before one succeeds (a large number: it never does)
        self.fail_numbers = dict(fail_numbers or {})
        self.stored: list[Chunk] = []
        self.tries: list[tuple[int, bool]] = []
        self.threads: set[str] = set()

    def __call__(self, chunk: Chunk, retry: bool) -> None:
        self.threads.add(threading.current_thread().name)
        self.tries.append((chunk.number, retry))
        if self.fail_numbers.get(chunk.number, 0) > 0:
            self.fail_numbers[chunk.number] -= 1
            raise OSError(f"storage down for chunk {chunk.number}")
        self.stored.append(chunk)


def test_chunks_are_cut_by_size_and_by_the_timer_and_joined_give_the_whole() -> None:
    store = Store()
    sink = ChunkSink(store, max_bytes=100, attempts=1)
    writer = AsciicastWriter(sink, cols=80, rows=24, title="t")
    for number in range(20):
        writer.output(f"line {number:02d} of output\r\n".encode())
    sink.cut()  # the timer: what is waiting goes even though it is small
    writer.input(b"exit\r")
    whole_digest = writer.close()
    joined = b"".join(chunk.data for chunk in store.stored)
    assert [chunk.number for chunk in store.stored] == list(range(1, len(store.stored) + 1))
    assert len(store.stored) > 3  # more than 100 bytes of events: several chunks
    assert all(chunk.sha256 == hashlib.sha256(chunk.data).hexdigest() for chunk in store.stored)
    # Every chunk ends at a line: each prefix of chunks is a playable asciicast file.
    assert all(chunk.data.endswith(b"\n") for chunk in store.stored)
    assert hashlib.sha256(joined).hexdigest() == whole_digest == sink.kept().sha256
    assert b'"exit\\r"' in joined and joined.startswith(b'{"version": 2')
    kept = sink.kept()
    assert kept.chunks == len(store.stored) and kept.size == len(joined) and not kept.failure
    assert store.threads and threading.current_thread().name not in store.threads


def test_a_chunk_that_fails_once_is_retried_and_kept() -> None:
    store = Store(fail_numbers={2: 2})
    sink = ChunkSink(store, max_bytes=10**6, attempts=3, backoff=0.01)
    for number in range(3):
        sink.write(f'[{number}.0, "o", "x"]\n'.encode(), float(number))
        sink.cut()
    sink.close()
    assert [chunk.number for chunk in store.stored] == [1, 2, 3]
    assert store.tries == [(1, False), (2, False), (2, True), (2, True), (3, False)]
    assert not sink.kept().failure and sink.kept().seconds == 2.0


def test_after_a_lost_chunk_nothing_later_is_stored_and_the_failure_is_reported() -> None:
    store = Store(fail_numbers={2: 99})
    failures: list[str] = []
    sink = ChunkSink(store, max_bytes=10**6, attempts=2, backoff=0.01, on_failure=failures.append)
    for number in range(4):
        sink.write(f'[{number}.5, "o", "x"]\n'.encode(), number + 0.5)
        sink.cut()
    sink.close()
    assert [chunk.number for chunk in store.stored] == [1]
    assert 3 not in [number for number, _ in store.tries]  # never tried after the gap
    kept = sink.kept()
    assert kept.failure.startswith("storage failed at chunk 2") and failures == [kept.failure]
    assert kept.chunks == 1 and kept.seconds == 0.5
    assert kept.sha256 == hashlib.sha256(store.stored[0].data).hexdigest()


def test_the_writer_leaves_hashing_to_the_sink_and_gets_the_digest_of_what_was_stored() -> None:
    # One SHA-256 pass per chunk for the whole recording, in the upload thread: the writer keeps no
    # digest of its own, and at close it answers the sink's, which covers only the stored prefix.
    store = Store(fail_numbers={3: 99})
    sink = ChunkSink(store, max_bytes=10**6, attempts=1)
    writer = AsciicastWriter(sink, cols=80, rows=24, title="t")
    for number in range(4):
        writer.output(f"part {number}\r\n".encode())
        sink.cut()
    digest = writer.close()
    assert [chunk.number for chunk in store.stored] == [1, 2]
    assert digest == hashlib.sha256(b"".join(chunk.data for chunk in store.stored)).hexdigest()
    assert digest == sink.kept().sha256 and sink.kept().failure


def test_many_sinks_share_a_few_upload_threads_and_each_keeps_its_order() -> None:
    # One thread per open terminal would cost every terminal a thread: the process's upload
    # threads are shared, and each sink's chunks are still stored one after the other, in order.
    from terminal.chunks import UPLOAD_THREADS

    stores = [Store() for _ in range(UPLOAD_THREADS * 4)]
    idle_threads: list[str] = []

    def idle() -> None:
        idle_threads.append(threading.current_thread().name)

    sinks = [ChunkSink(store, max_bytes=10**6, attempts=1, on_idle=idle) for store in stores]
    for number in range(5):
        for sink in sinks:
            sink.write(f'[{number}.0, "o", "x"]\n'.encode(), float(number))
            sink.cut()
    for sink in sinks:
        sink.close()
    used = set().union(*(store.threads for store in stores))
    assert len(used) <= UPLOAD_THREADS
    assert all([chunk.number for chunk in store.stored] == [1, 2, 3, 4, 5] for store in stores)
    assert all(sink.kept().chunks == 5 and not sink.kept().failure for sink in sinks)
    assert idle_threads and set(idle_threads) <= used  # the idle hook runs on the upload thread


def test_close_waits_for_the_chunk_being_stored_and_returns_at_once_when_none_is() -> None:
    # close() makes its wait only while an upload thread drains (no event per terminal before).
    release = threading.Event()
    started = threading.Event()
    store = Store()

    def slow(chunk: Chunk, retry: bool) -> None:
        started.set()
        assert release.wait(10)
        store(chunk, retry)

    sink = ChunkSink(slow, max_bytes=10**6, attempts=1)
    sink.write(b'[0.5, "o", "a"]\n', 0.5)
    sink.cut()
    assert started.wait(10)
    sink.write(b'[1.0, "o", "b"]\n', 1.0)
    closed = threading.Thread(target=sink.close)
    closed.start()
    closed.join(0.2)
    assert closed.is_alive()  # the first chunk is still being stored
    release.set()
    closed.join(10)
    assert not closed.is_alive()
    assert [chunk.data for chunk in store.stored] == [b'[0.5, "o", "a"]\n', b'[1.0, "o", "b"]\n']
    idle = ChunkSink(Store(), max_bytes=10**6, attempts=1)
    idle.close()  # nothing written: nothing to wait for
    assert idle.kept().chunks == 0


def test_a_sink_is_behind_while_more_than_behind_bytes_wait_for_storage_and_not_once_it_caught_up() -> None:
    # Storage slower than the terminal: the chunks waiting for it are counted, and past BEHIND_BYTES
    # the sink says so (its owner then reads no more, terminal.live_recording); nothing is dropped.
    release = threading.Event()
    store = Store()

    def stalled(chunk: Chunk, retry: bool) -> None:
        assert release.wait(10)
        store(chunk, retry)

    line = b'[0.5, "o", "' + b"x" * (64 * 1024 - 16) + b'"]\n'
    sink = ChunkSink(stalled, max_bytes=len(line), attempts=1)  # every line is a chunk
    lines = BEHIND_BYTES // len(line) + 2
    sink.write(line, 0.5)
    assert sink.waiting == len(line) and not sink.behind
    for _ in range(lines - 1):
        sink.write(line, 0.5)
    assert sink.behind and sink.waiting == lines * len(line)
    release.set()
    deadline = time.monotonic() + 10
    while sink.waiting and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not sink.behind and sink.waiting == 0
    sink.close()
    assert [chunk.number for chunk in store.stored] == list(range(1, lines + 1))
