"""Ways a CLI session through the recording proxy could leave no usable record, each closed: a program
that only looks like scp, an scp observer giving up, binary stdin, locale variables carrying a command,
and sftp changing files without moving content."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
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

MARKER = "HIDDEN-42"


def all_sealed(request_id: int) -> None:
    wait_for(
        lambda: not TerminalSession.objects.filter(grant__request_id=request_id, ended_at__isnull=True).exists(),
        what="every session sealed",
    )


def ssh(proxied: Proxied, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", *args],
        env=proxied.cli.env, input=stdin, capture_output=True, timeout=90, check=False,
    )  # fmt: skip


def kept_events(record: TerminalSession, settings: Any, tmp_path: Path) -> list[Any]:
    settings.MEDIA_ROOT = tmp_path / "var" / "media"  # the daphne's recordings (PASSPORT_VAR_DIR)
    kept, chunks = recording_read(record)
    data = b"".join(chunks)  # a chunk at a time: kept is whole once they are read
    assert kept.chunks and not kept.problem, kept.problem
    return [json.loads(line) for line in data.decode().splitlines()[1:]]


def ended_of(record: TerminalSession) -> dict[str, Any]:
    entry = LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=record.pk)
    return dict(entry.detail)


def test_a_program_merely_named_scp_is_recorded_as_any_command(proxied: Proxied, settings: Any, tmp_path: Path) -> None:
    setup = proxied.ssh("mkdir -p ~/bin && printf '#!/bin/sh\\nexec sh\\n' > ~/bin/scp && chmod +x ~/bin/scp")
    assert setup.returncode == 0, setup.stderr
    typed = b"echo HIDDEN-$((6*7)); id -un\n"
    result = ssh(proxied, "web-1", "~/bin/scp -f notes", stdin=typed)
    assert result.returncode == 0, result.stderr
    assert MARKER.encode() in result.stdout  # an arbitrary shell ran
    all_sealed(proxied.access_request.pk)
    record = TerminalSession.objects.get(grant=proxied.grant, command="~/bin/scp -f notes")
    assert record.recording_state == RecordingState.COMPLETE
    streams = raw_streams(kept_events(record, settings, tmp_path))
    assert streams["i"] == typed and streams["o"] == result.stdout
    assert record.bytes_in == len(typed) and record.bytes_out == len(result.stdout)
    assert MARKER in record.transcript
    assert not LogbookEntry.objects.filter(action="file.transferred", request_id=proxied.access_request.pk).exists()


def test_an_scp_observer_that_gives_up_records_the_rest_and_seals_partial(
    proxied: Proxied, settings: Any, tmp_path: Path
) -> None:
    assert proxied.ssh("printf 'notes-body\\n' > notes").returncode == 0
    # The client is the sink of `scp -f`: "\0" says ready; a line after it answers nothing scp sent.
    stdin = b"\x00echo HIDDEN-$((6*7))\n"
    ssh(proxied, "web-1", "scp -f notes", stdin=stdin)
    request_id = proxied.access_request.pk
    all_sealed(request_id)
    record = TerminalSession.objects.get(grant=proxied.grant, command="scp -f notes")
    assert record.recording_state == RecordingState.PARTIAL
    assert "scp observer stopped" in record.recording_note and "an answer to nothing" in record.recording_note
    streams = raw_streams(kept_events(record, settings, tmp_path))
    assert streams["i"] == stdin  # the bytes it gave up on, and all after them
    ended = ended_of(record)
    assert ended["recording_state"] == "partial" and ended["bytes_in"] == len(stdin) == ended["input_bytes"]
    assert ended["input_sha256"] == hashlib.sha256(stdin).hexdigest()
    [note] = proxy_entries(request_id, "transfer.unobserved", count=1)
    assert note.detail["terminal_session"] == record.pk and note.detail["protocol"] == "scp"
    assert note.detail["reason"] == "an answer to nothing"


def test_binary_stdin_and_output_of_a_command_are_kept_byte_for_byte(
    proxied: Proxied, settings: Any, tmp_path: Path
) -> None:
    script = b"echo HIDDEN-$((6*7)) > ~/proof; rm -f ~/.bash_history\n"
    payload = gzip.compress(script)
    command = "gunzip | sh; printf '\\377\\376ok\\200'"
    result = ssh(proxied, "web-1", command, stdin=payload)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"\xff\xfeok\x80"
    assert proxied.ssh("cat ~/proof").stdout.strip() == MARKER.encode()
    all_sealed(proxied.access_request.pk)
    record = TerminalSession.objects.get(grant=proxied.grant, command=command)
    assert record.recording_state == RecordingState.COMPLETE
    streams = raw_streams(kept_events(record, settings, tmp_path))
    assert gzip.decompress(streams["i"]) == script and streams["i"] == payload
    assert streams["o"] == result.stdout
    ended = ended_of(record)
    assert ended["input_bytes"] == len(payload) == ended["bytes_in"]
    assert ended["input_sha256"] == hashlib.sha256(payload).hexdigest()
    assert ended["output_sha256"] == hashlib.sha256(result.stdout).hexdigest()


def test_locale_variables_pass_only_with_a_locale_value_and_are_on_record(proxied: Proxied) -> None:
    result = ssh(
        proxied, '-oSetEnv=LC_PAYLOAD="echo HIDDEN-$((6*7)) > ~/proof2" LC_TIME=C LANG="C;id"',
        "web-1", 'eval "$LC_PAYLOAD"; echo "[$LC_TIME][$LANG]"',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert b"[C][" in result.stdout and b"id" not in result.stdout
    assert proxied.ssh("test -e ~/proof2 || echo absent").stdout.strip() == b"absent"
    request_id = proxied.access_request.pk
    all_sealed(request_id)
    [refused] = proxy_entries(request_id, "proxy.refused", count=1, what="environment")
    payload = b"echo HIDDEN-$((6*7)) > ~/proof2"  # not a locale category: its length and digest only
    withheld = f"(not written down: {len(payload)} bytes)"
    assert refused.detail["variables"] == {"LC_PAYLOAD": withheld, "LANG": "C;id"}
    started = LogbookEntry.objects.get(action="terminal.started", request_id=request_id, detail__kind="exec",
                                       detail__command='eval "$LC_PAYLOAD"; echo "[$LC_TIME][$LANG]"')  # fmt: skip
    assert started.detail["environment"] == {"LC_TIME": "C"}


def test_sftp_removes_renames_chmods_and_symlinks_are_in_the_logbook(proxied: Proxied, tmp_path: Path) -> None:
    local = tmp_path / "seed.txt"
    local.write_text("seed\n")
    batch = tmp_path / "seed.batch"
    batch.write_text(f"put {local} victim-file.txt\nput {local} plain-name.txt\n")
    seeded = subprocess.run(
        ["sftp", "-F", proxied.config, "-oBatchMode=yes", "-b", str(batch), "web-1"],
        env=proxied.cli.env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    request_id = proxied.access_request.pk
    all_sealed(request_id)
    batch.write_text(
        "rm victim-file.txt\nrename plain-name.txt renamed-away.txt\nchmod 4777 renamed-away.txt\n"
        "symlink /etc/passwd link-to-passwd\n-rm never-there.txt\n"
    )
    done = subprocess.run(
        ["sftp", "-F", proxied.config, "-oBatchMode=yes", "-b", str(batch), "web-1"],
        env=proxied.cli.env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    all_sealed(request_id)
    gone = proxied.ssh("ls victim-file.txt 2>&1; ls -l link-to-passwd; stat -c %a renamed-away.txt")
    assert b"No such file" in gone.stdout and b"4777" in gone.stdout and b"/etc/passwd" in gone.stdout, gone.stdout
    session = TerminalSession.objects.filter(grant=proxied.grant, command="subsystem sftp").order_by("-id")[0]
    changes = [entry.detail for entry in proxy_entries(request_id, "file.changed", count=5)]
    assert all(change["terminal_session"] == session.pk and change["client"] == "cli" for change in changes)
    seen = [
        (c["operation"], c["path"].rsplit("/", 1)[-1], c.get("target", "").rsplit("/", 1)[-1], c["status"])
        for c in changes
    ]
    assert seen == [
        ("remove", "victim-file.txt", "", "ok"),
        ("rename", "renamed-away.txt", "plain-name.txt", "ok"),
        ("setstat", "renamed-away.txt", "", "ok"),
        ("symlink", "link-to-passwd", "passwd", "ok"),
        ("remove", "never-there.txt", "", "failed"),
    ]
    assert changes[2]["attributes"]["mode"] == "4777" and changes[3]["target"] == "/etc/passwd"
    assert ended_of(session)["files_changed"] == 5


def test_a_shell_that_printed_bytes_not_utf8_is_marked_lossy(proxied: Proxied) -> None:
    script = b"printf 'bin\\377ary\\n'; exit 0\n"
    result = ssh(proxied, "-tt", "web-1", stdin=script)
    assert result.returncode == 0, result.stderr
    assert b"bin\xffary" in result.stdout
    all_sealed(proxied.access_request.pk)
    record = TerminalSession.objects.get(grant=proxied.grant, kind="shell")
    assert record.recording_state == RecordingState.COMPLETE and "U+FFFD" in record.recording_note
    ended = ended_of(record)
    assert ended["recording_lossy"] is True and "U+FFFD" in ended["recording_note"]
    assert ended["bytes_in"] == len(script) and ended["bytes_out"] == len(result.stdout)
