"""Cost of recording to object storage in chunks (terminal.chunks) on terminal output throughput,
against recording to a local file (what the web process did before), in the same run.

The output path is what the browser terminal does with each read from the shell: hand it to the
recording (``AsciicastWriter.output``), then to the browser (an ``await``, here a no-op). The
baseline records to a local file flushed per event; the chunked run records into a
``ChunkSink`` whose thread uploads every MiB to devcloud's S3 (moto's server, started here as its
own process) through django-storages' S3 backend, while the output goes on. Two ratios:

- output path: the time to push all the output through (the uploads run meanwhile, in their own
  thread, competing for the interpreter);
- with the final drain: plus the wait until the last chunk is stored (what a terminal's end waits);
- the web process's CPU time for all of it (both threads), which the machine's load and moto's
  server (on the same cores here, across the network in production) do not change.

Not included: the manifest row per chunk (one INSERT in the upload thread per MiB).

``--browser`` measures the whole terminal instead (needs what terminal_throughput.py needs: root,
OpenSSH, PostgreSQL, Redis): ``head -c SIZE /dev/urandom | base64`` through the terminal WebSocket
of two daphne processes taking turns, one keeping recordings as local files (no bucket), one
uploading them in chunks to devcloud's S3 (PASSPORT_RECORDINGS_BUCKET); MB/s and their ratio.

Run: .venv/bin/python benchmarks/terminal_recording_storage.py [--megabytes 32] [--browser [--size 20M]]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BLOCK = 8192  # what terminal.bridge reads from the shell at a time


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _blocks(megabytes: int) -> list[bytes]:
    line = "drwxr-xr-x 2 rs-alice rs-alice 4096 Dec  3 12:00 \x1b[01;34mdirectory-ä\x1b[0m\r\n".encode()
    block = (line * (BLOCK // len(line) + 1))[:BLOCK]
    return [block] * (megabytes * 1024 * 1024 // BLOCK)


async def _pump(writer: object, blocks: list[bytes]) -> None:
    output = writer.output  # type: ignore[attr-defined]
    for block in blocks:
        output(block)
        await asyncio.sleep(0)  # the browser send


def local_file(blocks: list[bytes], directory: Path) -> tuple[float, float, float]:
    from terminal.recording import AsciicastWriter

    started, cpu = time.perf_counter(), time.process_time()
    writer = AsciicastWriter(directory / f"{uuid.uuid4()}.cast", cols=80, rows=24, title="bench")
    asyncio.run(_pump(writer, blocks))
    pushed = time.perf_counter() - started
    writer.close()
    return pushed, time.perf_counter() - started, time.process_time() - cpu


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process and its waited-for children used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def chunked(blocks: list[bytes]) -> tuple[float, float, float, int]:
    from terminal.chunks import Chunk, ChunkSink
    from terminal.recording import AsciicastWriter
    from terminal.storage import chunk_key, object_put

    prefix = f"recordings/bench-{uuid.uuid4()}"

    def store(chunk: Chunk, retry: bool) -> None:
        object_put(chunk_key(prefix, chunk.number), chunk.data, replace=retry)

    started, cpu = time.perf_counter(), time.process_time()
    sink = ChunkSink(store, max_bytes=1024 * 1024, attempts=4)
    writer = AsciicastWriter(sink, cols=80, rows=24, title="bench")
    asyncio.run(_pump(writer, blocks))
    pushed = time.perf_counter() - started
    writer.close()
    total, cpu = time.perf_counter() - started, time.process_time() - cpu
    kept = sink.kept()
    if kept.failure:
        raise SystemExit(f"upload failed: {kept.failure}")
    return pushed, total, cpu, kept.chunks


def browser(size: str, repeat: int) -> None:
    import statistics

    import boto3

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _terminal_shells import BrowserShell, run_measuring, stack_portal
    from _terminal_stack import Stack, _stop, require_environment
    from terminal_throughput import measure

    require_environment(web=True)
    with Stack(web=True) as stack:
        local = stack_portal(stack)
        endpoint = os.environ["AWS_ENDPOINT_URL"]
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench-recordings")
        first = stack.daphne
        os.environ["PASSPORT_RECORDINGS_BUCKET"] = "bench-recordings"
        try:
            stack._start_daphne()  # a second web process, uploading its recordings to devcloud's S3
        finally:
            del os.environ["PASSPORT_RECORDINGS_BUCKET"]
        second, stack.daphne = stack.daphne, first
        try:
            s3 = stack_portal(stack)
            shells = {"local": lambda: BrowserShell(local), "s3": lambda: BrowserShell(s3)}
            results = run_measuring(stack, measure(shells, size, repeat))  # type: ignore[arg-type]
        finally:
            _stop(second)
    rates = {label: statistics.median(r / s for s, r in runs) / 1e6 for label, runs in results.items()}
    print(f"terminal output of head -c {size} /dev/urandom | base64 through the browser path, median of {repeat}")
    print(f"recordings as local files: {rates['local']:.1f} MB/s; chunked to S3: {rates['s3']:.1f} MB/s")
    print(f"throughput, chunked upload / local file: {rates['s3'] / rates['local']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=32, help="terminal output per run (default 32)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each, the fastest counts (default 3)")
    parser.add_argument("--browser", action="store_true", help="the whole terminal, through two daphne processes")
    parser.add_argument("--size", default="20M", help="with --browser: bytes of random input for base64")
    args = parser.parse_args()
    if args.browser:
        browser(args.size, args.runs)
        return
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "devcloud.log"
        devcloud = subprocess.Popen(
            [sys.executable, "-m", "devcloud", "serve", "--port", str(port), "--state-dir", str(Path(tmp) / "dc")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("w"),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if devcloud.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"devcloud did not start:\n{log.read_text()[-2000:]}") from None
                    time.sleep(0.2)
            os.environ.update(
                {
                    "PASSPORT_ENV": "test",
                    "DJANGO_SETTINGS_MODULE": "passport_portal.settings",
                    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                    "AWS_ACCESS_KEY_ID": "devcloud",
                    "AWS_SECRET_ACCESS_KEY": "devcloud",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "PASSPORT_RECORDINGS_BUCKET": "bench-recordings",
                }
            )
            import django

            django.setup()
            from terminal.storage import bucket_ensure

            bucket_ensure()
            blocks = _blocks(args.megabytes)
            chunked(blocks[:256])  # warm up: the S3 client, its connection pool
            base = [local_file(blocks, Path(tmp)) for _ in range(args.runs)]
            moto_before = _cpu_of(devcloud.pid)
            runs = [chunked(blocks) for _ in range(args.runs)]
            moto_cpu = (_cpu_of(devcloud.pid) - moto_before) / args.runs
        finally:
            devcloud.terminate()
            devcloud.wait(timeout=20)
    base_push, base_total, base_cpu = (min(b[i] for b in base) for i in range(3))
    push, total, cpu = (min(r[i] for r in runs) for i in range(3))
    print(f"{args.megabytes} MiB of terminal output in {len(blocks)} reads of {BLOCK} bytes, {runs[0][3]} chunks")
    print(f"local file:    output path {base_push:.3f} s, with close {base_total:.3f} s, CPU {base_cpu:.3f} s")
    print(f"chunked to S3: output path {push:.3f} s, with last upload {total:.3f} s, CPU {cpu:.3f} s")
    print(f"output path, chunked upload / local file: {push / base_push:.2f}x")
    print(f"with the final drain, chunked upload / local file: {total / base_total:.2f}x")
    # The web process's own CPU (both threads; moto's server, here on the same cores, excluded).
    print(f"web process CPU, chunked upload / local file: {cpu / base_cpu:.2f}x")
    print(f"devcloud's S3 (moto, on the same cores here) used {moto_cpu:.3f} s of CPU per run storing the chunks")


if __name__ == "__main__":
    main()
