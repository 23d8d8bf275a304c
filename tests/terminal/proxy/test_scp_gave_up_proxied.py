"""Through the proxy, against the instance's real scp: what crossed while the scp observer waited for an
answer is on record when the observer stops, not lost.

The instance's `scp -t` reads its input in order, so a client may send a file without waiting for any
answer; the observer holds such bytes until the answer comes. When it stops before then (the source ran
too far ahead), they have crossed already: the instance wrote the file (or sent it, for a download). They
are recorded late, and the Logbook says so.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from audit.models import LogbookEntry
from terminal.models import RecordingState, TerminalSession
from terminal.recorder import recording_read
from terminal.recording import raw_streams
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied, proxy_entries

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

# ANSI and OSC escapes, a command substitution, a carriage return: a name the instance's scp accepts.
HOSTILE = b"\x1b]0;owned\x07\x1b[2J $(id) \r.sh"
PAYLOAD = b"echo HIDDEN-$((6*7)) >> ~/.bashrc\n\x00\xff"
AHEAD = b"C0644 %d %s\n" % (len(PAYLOAD), HOSTILE) + PAYLOAD + b"\x00"
RUN_AHEAD = 9000  # more than the observer holds (scp.MAX_LINE)


def ssh_command(proxied: Proxied, command: str) -> list[str]:
    return ["ssh", "-F", proxied.config, "-oBatchMode=yes", "web-1", command]


def sealed_record(proxied: Proxied, command: str) -> TerminalSession:
    request_id = proxied.access_request.pk
    wait_for(
        lambda: not TerminalSession.objects.filter(grant__request_id=request_id, ended_at__isnull=True).exists(),
        what="every session sealed",
    )
    return TerminalSession.objects.get(grant=proxied.grant, command=command)


def kept_streams(record: TerminalSession, settings: Any, tmp_path: Path) -> dict[str, bytes]:
    settings.MEDIA_ROOT = tmp_path / "var" / "media"  # the daphne's recordings (PASSPORT_VAR_DIR)
    kept, chunks = recording_read(record)
    data = b"".join(chunks)  # a chunk at a time: kept is whole once they are read
    assert kept.chunks and not kept.problem, kept.problem
    return raw_streams([json.loads(line) for line in data.decode().splitlines()[1:]])


def scp_waits_for_a_reader(proxied: Proxied) -> bool:
    """Whether the instance's scp is blocked opening a FIFO for writing (the kernel's wait_for_partner)."""
    probe = 'for p in $(pgrep -u "$(id -u)" -x scp); do cat "/proc/$p/wchan"; echo; done'
    return b"wait_for_partner" in proxied.ssh(probe).stdout


def unobserved(proxied: Proxied) -> dict[str, Any]:
    [note] = proxy_entries(proxied.access_request.pk, "transfer.unobserved", count=1)
    return dict(note.detail)


def test_a_file_the_instances_scp_took_before_the_observer_stopped_is_recorded(
    proxied: Proxied, settings: Any, tmp_path: Path
) -> None:
    """The file is a FIFO, so the instance's scp answers its record only once something reads it: the
    observer still waits for that answer when the client runs ahead."""
    fifo = "drop/$(printf '\\033]0;owned\\007\\033[2J $(id) \\r.sh')"  # the shell makes HOSTILE of it
    assert proxied.ssh(f'mkdir drop && mkfifo "{fifo}"').returncode == 0
    second = b"C0644 %d second.txt\n" % RUN_AHEAD + b"s" * RUN_AHEAD + b"\x00"
    client = subprocess.Popen(
        ssh_command(proxied, "scp -d -t drop"),
        env=proxied.cli.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert client.stdin is not None
    read: list[bytes] = []
    try:
        client.stdin.write(AHEAD)
        client.stdin.flush()
        # On its own through the proxy: the instance's scp took the record and waits to open the FIFO.
        wait_for(lambda: scp_waits_for_a_reader(proxied), what="the instance's scp opening the FIFO")
        client.stdin.write(second)
        client.stdin.flush()
        # The observer stops on the second record (it still waits for the first one's answer).
        log = tmp_path / "daphne.log"  # the daphne fixture's
        wait_for(lambda: "scp observer stopped" in log.read_text(errors="replace"), what="the observer stopping")
        reader = threading.Thread(target=lambda: read.append(proxied.ssh(f'cat "{fifo}"').stdout))
        reader.start()
        reader.join(90)
        client.stdin.close()
        client.wait(90)
    finally:
        if client.poll() is None:
            client.kill()
    assert read == [PAYLOAD]  # the file went through the proxy to the instance
    assert proxied.ssh("cat drop/second.txt").stdout == b"s" * RUN_AHEAD
    record = sealed_record(proxied, "scp -d -t drop")
    assert record.recording_state == RecordingState.PARTIAL
    note = unobserved(proxied)
    assert note["reason"] == "the source ran ahead of the sink's answer", note
    assert kept_streams(record, settings, tmp_path)["i"] == AHEAD + second
    assert "recorded late" in note["note"], note
    assert note["unrecorded_bytes_in"] == 0, note  # only the instance's first answer was not recorded
    # Its record never answered while observed, the file is on record as those bytes, not as a transfer.
    assert not LogbookEntry.objects.filter(action="file.transferred", request_id=proxied.access_request.pk)


def test_what_a_program_named_scp_on_the_instance_sent_before_the_observer_stopped_is_recorded(
    proxied: Proxied, settings: Any, tmp_path: Path
) -> None:
    """`scp -f` runs whatever scp is first on the instance's PATH: one that sends a file without waiting
    for the client's answer, then more than the observer holds."""
    sent = subprocess.run(ssh_command(proxied, "cat > ahead"), env=proxied.cli.env, input=AHEAD, check=False,
                          capture_output=True, timeout=90)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    setup = proxied.ssh(
        f"mkdir -p ~/bin && printf '#!/bin/sh\\ncat ~/ahead; sleep 2; head -c {RUN_AHEAD} /dev/zero\\n' > ~/bin/scp "
        "&& chmod +x ~/bin/scp && sed -i '1i PATH=$HOME/bin:$PATH' ~/.bashrc"
    )
    assert setup.returncode == 0, setup.stderr
    result = subprocess.run(
        ssh_command(proxied, "scp -f notes"), env=proxied.cli.env, input=b"\x00", capture_output=True, timeout=90,
        check=False,
    )  # fmt: skip
    assert result.stdout == AHEAD + b"\x00" * RUN_AHEAD, result.stderr
    record = sealed_record(proxied, "scp -f notes")
    assert record.recording_state == RecordingState.PARTIAL
    note = unobserved(proxied)
    assert note["reason"] == "the source ran ahead of the sink's answer", note
    assert kept_streams(record, settings, tmp_path)["o"] == result.stdout
    assert "recorded late" in note["note"], note
    assert note["unrecorded_bytes_out"] == 0, note  # only the client's first answer was not recorded
