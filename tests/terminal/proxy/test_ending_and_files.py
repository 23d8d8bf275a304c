"""The proxy's connection ends when the request does, saying why; scp and sftp go through it with
every file in the Logbook; an account whose CLI sessions are direct keeps today's path."""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db.models import Sum

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app import services as request_services
from terminal.models import RecordingChunk, SessionKind, TerminalSession
from tests.sshd import sshd_available
from tests.stack import wait_for
from tests.terminal.proxy.conftest import Proxied, proxied_request

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]

COMPLETED = "The access request was completed; this session is closed."


@contextlib.contextmanager
def _long_session(proxied: Proxied) -> Iterator[tuple[subprocess.Popen[bytes], TerminalSession]]:
    """A command that runs for minutes through the proxy, and its session's row once it has run a
    second; killed after the block if it is still running."""
    process = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "-tt", "web-1", "echo started; sleep 300"],
        env=proxied.cli.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        record = wait_for(
            lambda: TerminalSession.objects.filter(grant=proxied.grant, kind=SessionKind.EXEC).first(),
            what="the session's row",
        )
        time.sleep(1)
        yield process, record
    finally:
        if process.poll() is None:
            process.kill()


def test_completing_the_request_cuts_the_session_and_says_why(proxied: Proxied) -> None:
    with _long_session(proxied) as (process, record):
        request_services.access_request_complete(access_request=proxied.access_request, actor=proxied.alice)
        _, err = process.communicate(timeout=30)
    assert process.returncode != 0
    # One line, CR LF (ssh holds the terminal raw), from `passport proxy`.
    assert f"passport: {COMPLETED}\r\n".encode() in err, err
    record = wait_for(
        lambda: TerminalSession.objects.filter(pk=record.pk, ended_at__isnull=False).first(), what="sealed"
    )
    assert record.end_reason == COMPLETED
    ended = LogbookEntry.objects.get(action="terminal.ended", detail__terminal_session=record.pk)
    assert ended.detail["reason"] == COMPLETED


def test_an_approver_ends_one_cli_session_with_a_reason(proxied: Proxied) -> None:
    from terminal.live_services import session_terminate

    with _long_session(proxied) as (process, record):
        assert session_terminate(session=record, user=proxied.approver, reason="stop now \x1b[31m$(id)")
        _, err = process.communicate(timeout=30)
    assert process.returncode != 0
    assert b"ended this session: stop now" in err and b"\x1b[31m" not in err, err
    record = wait_for(
        lambda: TerminalSession.objects.filter(pk=record.pk, ended_at__isnull=False).first(), what="sealed"
    )
    assert "ended this session: stop now" in record.end_reason


def test_revoking_the_cli_sign_in_cuts_its_session(proxied: Proxied) -> None:
    """The lost laptop: its token revoked, the ssh it has open through the proxy ends at once."""
    from accounts import cli_tokens
    from accounts.models import ApiToken
    from terminal.services import SIGN_IN_REVOKED_MESSAGE

    with _long_session(proxied) as (process, record):
        token = ApiToken.objects.get(user=proxied.alice)
        cli_tokens.api_token_revoke(token=token, actor=proxied.alice, reason=cli_tokens.RevokeReason.REVOKED)
        _, err = process.communicate(timeout=30)
    assert process.returncode != 0
    assert f"passport: {SIGN_IN_REVOKED_MESSAGE}\r\n".encode() in err, err
    record = wait_for(
        lambda: TerminalSession.objects.filter(pk=record.pk, ended_at__isnull=False).first(), what="sealed"
    )
    assert record.end_reason == SIGN_IN_REVOKED_MESSAGE
    # And the CLI cannot open another.
    again = proxied.ssh("true")
    assert again.returncode != 0


def _transfers(request_id: int) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(action="file.transferred", request_id=request_id).order_by("id"))


def test_scp_and_sftp_through_the_proxy(proxied: Proxied, tmp_path: Path) -> None:
    content = bytes(range(256)) * 300 + b"end"
    digest = hashlib.sha256(content).hexdigest()
    # A hostile name: spaces, a newline-free escape sequence and $(...), kept as data.
    local = tmp_path / "data $(touch pwned) \x1b[31m.bin"
    local.write_bytes(content)
    env = proxied.cli.env
    legacy = subprocess.run(
        ["scp", "-O", "-F", proxied.config, "-oBatchMode=yes", str(local), "web-1:legacy.bin"],
        env=env, capture_output=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert legacy.returncode == 0, legacy.stderr
    modern = subprocess.run(
        ["scp", "-F", proxied.config, "-oBatchMode=yes", "web-1:legacy.bin", str(tmp_path / "back.bin")],
        env=env, capture_output=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert modern.returncode == 0, modern.stderr
    assert (tmp_path / "back.bin").read_bytes() == content
    batch = tmp_path / "batch"
    batch.write_text(f"put {tmp_path / 'back.bin'} sftp.bin\nls -l sftp.bin\n")
    sftp = subprocess.run(
        ["sftp", "-F", proxied.config, "-oBatchMode=yes", "-b", str(batch), "web-1"],
        env=env, capture_output=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert sftp.returncode == 0, sftp.stderr
    check = proxied.ssh("sha256sum legacy.bin sftp.bin")
    assert check.stdout.decode().count(digest) == 2, check

    transfers = wait_for(lambda: len(_transfers(proxied.access_request.pk)) >= 3 and _transfers(
        proxied.access_request.pk), what="three transfers")  # fmt: skip
    seen = {(entry.detail["protocol"], entry.detail["direction"]): entry.detail for entry in transfers}
    assert seen[("scp", "upload")]["sha256"] == digest and seen[("scp", "upload")]["size"] == len(content)
    assert seen[("sftp", "download")]["sha256"] == digest
    assert seen[("sftp", "upload")]["path"].endswith("sftp.bin") and seen[("sftp", "upload")]["complete"]
    assert not Path("pwned").exists() and not (tmp_path / "pwned").exists()
    # The sftp subsystem and the scp commands are sessions of their own, recorded.
    kinds = set(TerminalSession.objects.filter(grant=proxied.grant).values_list("command", flat=True))
    assert "subsystem sftp" in kinds and any(command.startswith("scp -t") for command in kinds)


def test_a_100_mib_scp_each_way_is_in_the_logbook_with_its_digest(proxied: Proxied, tmp_path: Path) -> None:
    """Large copies through the recording proxy: the Logbook's SHA-256 is the file's, both ways."""
    size = 100 * 2**20 + 7  # not a multiple of any buffer size
    local = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with local.open("wb") as out:
        left = size
        while left:
            block = hashlib.sha512(str(left).encode()).digest() * 2048  # incompressible enough, deterministic
            block = block[:left]
            out.write(block)
            digest.update(block)
            left -= len(block)
    expected = digest.hexdigest()
    env = proxied.cli.env
    for command in (
        ["scp", "-F", proxied.config, "-oBatchMode=yes", str(local), "web-1:big.bin"],
        ["scp", "-F", proxied.config, "-oBatchMode=yes", "web-1:big.bin", str(tmp_path / "back.bin")],
    ):
        copied = subprocess.run(
            command, env=env, capture_output=True, timeout=600, check=False, stdin=subprocess.DEVNULL
        )
        assert copied.returncode == 0, copied.stderr
    with (tmp_path / "back.bin").open("rb") as back:
        assert hashlib.file_digest(back, "sha256").hexdigest() == expected
    transfers = wait_for(lambda: len(_transfers(proxied.access_request.pk)) >= 2 and _transfers(
        proxied.access_request.pk), what="two transfers")  # fmt: skip
    seen = {entry.detail["direction"]: entry.detail for entry in transfers if entry.detail["path"].endswith("big.bin")}
    for direction in ("upload", "download"):
        assert seen[direction]["size"] == size, seen
        assert seen[direction]["sha256"] == expected, seen
        assert seen[direction]["complete"] is True
    # The recordings of the transfers keep no copy of the payload: each file is on record by its digest.
    transfer_sessions = TerminalSession.objects.filter(grant=proxied.grant, command="subsystem sftp")
    assert transfer_sessions.count() == 2
    kept = RecordingChunk.objects.filter(session__in=transfer_sessions).aggregate(total=Sum("size"))["total"] or 0
    assert kept < 2**20, kept
    proxied.ssh("rm -f big.bin")


def test_direct_accounts_keep_the_data_channel(prod: AwsAccount, daphne: str, tmp_path: Path) -> None:
    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    proxied = proxied_request(prod, daphne, tmp_path)
    access_request = proxied.access_request
    result = subprocess.run(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "web-1", "whoami"],
        env=proxied.cli.env, capture_output=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == access_request.grants.get().username
    assert not TerminalSession.objects.filter(grant__request=access_request).exists()
    started = LogbookEntry.objects.filter(action="session.started", request_id=access_request.pk)
    assert started.exists() and not started.filter(detail__via="cli-proxy").exists()


def test_a_moderated_account_waits_for_an_approver(proxied: Proxied, prod: AwsAccount) -> None:
    from terminal.presence import Watcher, watcher_beat

    AwsAccount.objects.filter(pk=prod.pk).update(require_session_join=True)
    process = subprocess.Popen(
        ["ssh", "-F", proxied.config, "-oBatchMode=yes", "web-1", "echo ran"],
        env=proxied.cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        record = wait_for(
            lambda: TerminalSession.objects.filter(grant=proxied.grant, kind=SessionKind.EXEC).first(),
            what="the session's row",
        )
        time.sleep(4)
        assert process.poll() is None  # held: nothing ran while no approver watches
        watcher = Watcher(id="w1", user_id=proxied.approver.pk, name="approver", approver=True)
        watcher_beat(session_id=record.pk, watcher=watcher)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert out == b"ran\n"
    assert b"waiting for an approver to join" in err and b"approver is watching this session" in err, err
