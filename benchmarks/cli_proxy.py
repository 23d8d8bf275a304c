"""The portal's recording SSH proxy (`passport proxy` in record mode) against the account's
``direct`` mode and against direct ssh, with the real OpenSSH client, in the same run:

- direct:       ssh/scp straight to the host's sshd on loopback (the baseline);
- mode-direct:  the config `passport ssh-config` writes, the account's CLI sessions "direct":
                `passport proxy` speaks the Session Manager data channel itself (not recorded);
- record:       the same config with the account's CLI sessions "record" (the default):
                `passport proxy` -> the portal's WebSocket (daphne) -> the portal's SSH server,
                which records and relays over its own data channel to the same sshd.

    .venv/bin/python benchmarks/cli_proxy.py [--size 100M] [--shell-size 20M] [--repeat 3]

Measured (the paths take turns within each round; medians of the rounds):

- connect: ``ssh HOST true``, the whole command (sign-in, WebSocket, StartSession, both SSH logins);
- scp: SIZE random bytes up (``scp FILE HOST:``) and down again (``scp HOST:FILE .``, the copy's
  SHA-256 checked), whole commands, as MB/s (10^6 bytes) gross and net of the path's connect time;
- shell output: ``ssh -tt HOST 'echo start; head -c SHELL_SIZE /dev/urandom | base64; echo done'``
  (a PTY exec), timed from the start marker to the done marker as ssh prints them: MB/s of output;
- concurrency: idle PTY shells through the recording proxy, opened ``--parallel`` at a time up to
  each of ``--steps`` (stopping at ``--max`` or the first failure); each answers an ``echo`` when
  opened and again at the end ("held"); daphne's resident memory per session (growth since one
  session was opened and closed) and the time to open. The shells are asyncssh over the proxy's
  WebSocket in this process (what `passport proxy` carries), not hundreds of ssh processes.

Needs root, OpenSSH, PostgreSQL and Redis on 127.0.0.1 (scripts/services starts them). Uses its
own database passport_bench_cli_proxy and Redis db 13 (flushed), apart from the other terminal
benchmarks'. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _terminal_stack
from _bulk_paths import parse_size

_terminal_stack.DB_NAME = "passport_bench_cli_proxy"
_terminal_stack.REDIS_URL = "redis://127.0.0.1:6379/13"

from _cli_paths import HOST, PATHS, CliPaths, ProxiedShell  # noqa: E402
from _terminal_stack import Stack, fail, ratio, require_environment, rss_kib  # noqa: E402

MODE = {"direct": "direct", "mode-direct": "direct", "record": "record"}
START, DONE = b"bench-go-42", b"bench-done-42"
REMOTE_FILE = "bench-scp.bin"
Results = dict[tuple[str, str], list[float]]


def say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def timed(argv: list[str], env: dict[str, str], what: str, timeout: float = 900) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise fail(f"{what} exited {result.returncode}: {result.stderr.decode(errors='replace').strip()[-2000:]}")
    return elapsed


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, timeout: float = 600) -> float:
    """Wait until the process is idle (under 2 % of a core for 0.5 s): seconds waited."""
    started = time.perf_counter()
    before = cpu_seconds(pid)
    while time.perf_counter() - started < timeout:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now - before < 0.01:
            break
        before = now
    return time.perf_counter() - started


def sealed(timeout: float = 600) -> float:
    """Wait until every recorded session is sealed (its row ended): seconds waited."""
    from django.db import close_old_connections

    from terminal.models import TerminalSession

    started = time.perf_counter()
    close_old_connections()
    while TerminalSession.objects.filter(ended_at__isnull=True).exists():
        if time.perf_counter() - started > timeout:
            raise fail(f"a recorded session was not sealed within {timeout:.0f} s")
        time.sleep(0.2)
    return time.perf_counter() - started


def quiet(pid: int) -> float:
    """The web process done with earlier sessions: every recording sealed and the process idle."""
    return sealed() + settle(pid)


def measure_transfers(paths: CliPaths, size: int, repeat: int) -> Results:
    """connect, scp up and scp down per path and round (seconds)."""
    source, copy = paths.home / "up.bin", paths.home / "down.bin"
    with source.open("wb") as handle:
        for _ in range(0, size, 1 << 20):
            handle.write(os.urandom(min(1 << 20, size - handle.tell())))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert paths.stack.daphne is not None
    daphne = paths.stack.daphne.pid
    results: Results = {}
    for round_number in range(repeat):
        for label in PATHS:
            paths.use(MODE[label])
            ssh, scp = paths.ssh_argv(label), paths.ssh_argv(label, "scp")
            runs = {
                "connect": [*ssh, HOST, "true"],
                "up": [*scp, "-q", str(source), f"{HOST}:{REMOTE_FILE}"],
                "down": [*scp, "-q", f"{HOST}:{REMOTE_FILE}", str(copy)],
            }
            for what, argv in runs.items():
                copy.unlink(missing_ok=True)
                quiet(daphne)  # a previous session's seal (in the web process) does not slow this one
                cpu = cpu_seconds(daphne)
                seconds = timed(argv, paths.env, f"{label} {what}")
                lag = quiet(daphne)
                cpu = cpu_seconds(daphne) - cpu
                if what == "down" and hashlib.sha256(copy.read_bytes()).hexdigest() != digest:
                    raise fail(f"{label}: the downloaded copy differs from what was uploaded")
                results.setdefault((label, what), []).append(seconds)
                results.setdefault((label, f"{what}-cpu"), []).append(cpu)
                results.setdefault((label, f"{what}-lag"), []).append(lag)
                say(f"round {round_number + 1} {label:11} {what:7} {seconds:6.2f} s, web process CPU {cpu:5.2f} s")
    return results


def shell_output(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run ``argv`` (ssh -tt ... command); seconds and bytes from the start marker to the done marker."""
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    fd = process.stdout.fileno()
    seen, started, received = b"", 0.0, 0
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                raise RuntimeError(f"ssh ended before the done marker: {process.communicate()[1][-2000:]!r}")
            if not started:
                seen += data
                if START in seen:
                    started = time.perf_counter()
                    data = seen[seen.index(START) + len(START) :]
                    seen = b""
                else:
                    continue
            received += len(data)
            seen = seen[-len(DONE) :] + data
            if DONE in seen:
                return time.perf_counter() - started, received
    finally:
        process.wait(timeout=120)


def measure_shell(paths: CliPaths, size: str, repeat: int) -> dict[str, list[tuple[float, int]]]:
    command = f"echo bench-go-$((40+2)); head -c {size} /dev/urandom | base64; echo bench-done-$((6*7))"
    results: dict[str, list[tuple[float, int]]] = {}
    for round_number in range(repeat):
        for label in PATHS:
            paths.use(MODE[label])
            assert paths.stack.daphne is not None
            quiet(paths.stack.daphne.pid)
            seconds, received = shell_output([*paths.ssh_argv(label), "-tt", HOST, command], paths.env)
            results.setdefault(label, []).append((seconds, received))
            say(f"round {round_number + 1} {label:11} shell   {received / 1e6:6.1f} MB in {seconds:6.2f} s")
    return results


def measure_concurrency(paths: CliPaths, steps: list[int], parallel: int) -> dict[str, Any]:
    """The account in record mode, a key and its certificate (the database is read here, not in the loop)."""
    from passport_cli.proxy_socket import proxy_url

    stack = paths.stack
    assert stack.target is not None
    paths.use("record")
    assert stack.daphne is not None
    quiet(stack.daphne.pid)
    key, certificates = stack.credentials()
    url = proxy_url(stack.base_url, paths.request_id, stack.target.instance_id)
    return asyncio.run(_concurrency(paths.stack, url, paths.token, key, certificates, steps, parallel))


async def _concurrency(
    stack: Stack, url: str, token: str, key: Any, certificates: list[str], steps: list[int], parallel: int
) -> dict[str, Any]:
    assert stack.target is not None and stack.daphne is not None and stack.devcloud is not None

    def make() -> ProxiedShell:
        assert stack.target is not None
        return ProxiedShell(url=url, token=token, username=stack.target.username, key=key, certificates=certificates)

    async def open_one(number: int) -> tuple[ProxiedShell, float]:
        shell = make()
        started = time.perf_counter()
        try:
            await asyncio.wait_for(shell.open(), 120)
            await shell.answer(number)
        except BaseException:
            await shell.close()
            raise
        return shell, time.perf_counter() - started

    warm, _ = await open_one(0)  # lazy imports and first-use caches are not counted
    await warm.close()
    await asyncio.sleep(2)
    base_daphne, base_devcloud = rss_kib(stack.daphne.pid), rss_kib(stack.devcloud.pid)
    shells: list[ProxiedShell] = []
    rows: list[dict[str, Any]] = []
    failure = ""
    for step in steps:
        opened: list[float] = []
        step_started = time.perf_counter()
        while len(shells) < step and not failure:
            batch = range(len(shells), min(step, len(shells) + parallel))
            outcomes = await asyncio.gather(*(open_one(n) for n in batch), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    failure = failure or f"{type(outcome).__name__}: {outcome}"
                else:
                    shells.append(outcome[0])
                    opened.append(outcome[1])
        daphne, devcloud = rss_kib(stack.daphne.pid), rss_kib(stack.devcloud.pid)
        rows.append({
            "open": len(shells), "seconds": time.perf_counter() - step_started,
            "median": statistics.median(opened) if opened else 0.0, "max": max(opened, default=0.0),
            "daphne": daphne, "devcloud": devcloud,
            "per": (daphne - base_daphne) / len(shells) if shells else 0.0,
        })  # fmt: skip
        say(f"{len(shells)} proxied shells open, daphne {daphne / 1024:.0f} MiB" + (f" ({failure})" if failure else ""))
        if failure:
            break
    held = 0
    for start in range(0, len(shells), parallel * 4):
        answers = await asyncio.gather(
            *(shell.answer(1000 + start + i) for i, shell in enumerate(shells[start : start + parallel * 4])),
            return_exceptions=True,
        )
        held += sum(1 for answer in answers if not isinstance(answer, BaseException))
    for start in range(0, len(shells), parallel * 4):
        await asyncio.gather(*(shell.close() for shell in shells[start : start + parallel * 4]))
    return {"rows": rows, "held": held, "failure": failure, "base_daphne": base_daphne, "base_devcloud": base_devcloud}


def print_transfers(results: Results, size: int, repeat: int) -> None:
    connect = {label: statistics.median(results[label, "connect"]) for label in PATHS}
    print(f"\nconnect (ssh {HOST} true, whole command), median of {repeat} rounds")
    print(f"{'path':12} {'seconds':>8} {'vs direct ssh':>14}")
    for label in PATHS:
        print(f"{label:12} {connect[label]:8.2f} {ratio(connect[label], connect['direct']):>14}")
    print(f"\nscp of {size / 2**20:.0f} MiB, whole command (MB/s = 10^6 bytes/s; net: less the path's connect time)")
    columns = ("path", "dir", "seconds", "MB/s", "net MB/s", "vs direct ssh", "vs mode-direct")
    print(
        " ".join(
            f"{name:{width}}" for name, width in zip(columns, ("12", ">4", ">8", ">7", ">9", ">14", ">15"), strict=True)
        )
    )
    rates = {key: size / statistics.median(runs) / 1e6 for key, runs in results.items() if key[1] in ("up", "down")}
    for direction in ("up", "down"):
        for label in PATHS:
            seconds = statistics.median(results[label, direction])
            net = size / max(seconds - connect[label], 1e-3) / 1e6
            print(
                f"{label:12} {direction:>4} {seconds:8.2f} {rates[label, direction]:7.1f} {net:9.1f} "
                f"{ratio(rates[label, direction], rates['direct', direction]):>14} "
                f"{ratio(rates[label, direction], rates['mode-direct', direction]):>15}"
            )
    print("\nthe web process (daphne) per command: CPU seconds, and seconds until its recordings were sealed")
    print(f"{'path':12} {'what':>8} {'CPU s':>7} {'busy after s':>13}")
    for label in PATHS:
        for what in ("connect", "up", "down"):
            cpu = statistics.median(results[label, f"{what}-cpu"])
            lag = statistics.median(results[label, f"{what}-lag"])
            print(f"{label:12} {what:>8} {cpu:7.2f} {max(lag - 0.5, 0):13.1f}")
    for direction in ("up", "down"):
        versus = ratio(rates["record", direction], rates["mode-direct", direction]).strip()
        print(f"scp {direction}: record / mode-direct {versus} (goal >= 0.5x)")


def print_shell(results: dict[str, list[tuple[float, int]]], size: str, repeat: int) -> None:
    print(f"\nshell output of head -c {size} /dev/urandom | base64 in a PTY exec (ssh -tt), median of {repeat} rounds")
    print(f"{'path':12} {'MB':>7} {'seconds':>8} {'MB/s':>7} {'vs direct ssh':>14} {'vs mode-direct':>15}")
    rates = {label: statistics.median(r / s for s, r in runs) / 1e6 for label, runs in results.items()}
    for label, runs in results.items():
        received = statistics.median(r for _, r in runs) / 1e6
        seconds = statistics.median(s for s, _ in runs)
        print(
            f"{label:12} {received:7.1f} {seconds:8.2f} {rates[label]:7.1f} {ratio(rates[label], rates['direct']):>14} "
            f"{ratio(rates[label], rates['mode-direct']):>15}"
        )
    print(f"shell output: record / mode-direct {ratio(rates['record'], rates['mode-direct']).strip()} (goal >= 0.5x)")


def print_concurrency(found: dict[str, Any], parallel: int) -> None:
    print(f"\nidle PTY shells through the recording proxy, one daphne process, opened {parallel} at a time")
    daphne, devcloud = found["base_daphne"] / 1024, found["base_devcloud"] / 1024
    print(f"(daphne RSS before: {daphne:.0f} MiB, devcloud's {devcloud:.0f} MiB)")
    columns = ("open", "step s", "open median s", "open max s", "daphne MiB", "KiB/session", "devcloud MiB")
    print(" ".join(f"{name:>{width}}" for name, width in zip(columns, (5, 7, 14, 11, 11, 12, 13), strict=True)))
    for row in found["rows"]:
        print(
            f"{row['open']:5d} {row['seconds']:7.1f} {row['median']:14.2f} {row['max']:11.2f} "
            f"{row['daphne'] / 1024:11.0f} {row['per']:12.0f} {row['devcloud'] / 1024:13.0f}"
        )
    reached = found["rows"][-1]["open"] if found["rows"] else 0
    print(
        f"reached {reached}, held {found['held']} at the end"
        + (f"; stopped: {found['failure']}" if found["failure"] else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="100M", help="the scp file's size, as head -c takes it (default 100M)")
    parser.add_argument("--shell-size", default="20M", help="random bytes base64-printed in the shell (default 20M)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each path runs once per round")
    parser.add_argument("--steps", default="10,25,50,100,200", help="concurrent proxied shells to reach, in order")
    parser.add_argument("--max", type=int, default=200, help="stop the concurrency escalation here")
    parser.add_argument("--parallel", type=int, default=8, help="shells opened at a time (below sshd's MaxStartups)")
    parser.add_argument("--skip-scp", action="store_true", help="no connect and scp tables")
    parser.add_argument("--skip-shell", action="store_true", help="no shell output table")
    parser.add_argument("--skip-concurrency", action="store_true", help="no concurrency table")
    args = parser.parse_args()
    steps = [n for n in (int(s) for s in args.steps.split(",")) if n <= args.max] or [args.max]
    require_environment(web=True)

    with Stack(web=True) as stack:
        paths = CliPaths(stack)
        stack.say("signing the passport CLI in and writing the ssh configs")
        paths.sign_in()
        paths.write_configs()
        try:  # concurrency first: daphne's memory not yet grown by the transfers' recordings
            concurrency = {} if args.skip_concurrency else measure_concurrency(paths, steps, args.parallel)
            transfers = {} if args.skip_scp else measure_transfers(paths, parse_size(args.size), args.repeat)
            shell = {} if args.skip_shell else measure_shell(paths, args.shell_size, args.repeat)
        except BaseException:
            print(f"--- daphne log ---\n{stack.daphne_log()}", file=sys.stderr)
            raise
        errors = stack.daphne_errors()

    if transfers:
        print_transfers(transfers, parse_size(args.size), args.repeat)
    if shell:
        print_shell(shell, args.shell_size, args.repeat)
    if concurrency:
        print_concurrency(concurrency, args.parallel)
    if errors:
        print("\ndaphne logged errors: " + "; ".join(f"{n}x {line[:160]}" for line, n in errors.items()))


if __name__ == "__main__":
    main()
