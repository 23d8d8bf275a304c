"""The transfer observers against what the real OpenSSH tools say: `sftp`, `scp` (sftp mode) and `scp -O`.

No sshd: sftp talks to a local sftp-server (`sftp -D`), scp to a fake ssh that runs sftp-server or the
remote command here; tests/terminal/proxy/capture.py logs both directions in between, and the captures
are fed to the observers cut at random places. What they report is checked against the real files.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from terminal.proxy.observers import Change, ScpObserver, SftpObserver, Transfer
from tests.terminal.proxy import capture

SEEDS = (1, 2, 3)
HOSTILE_NAMES = ("with space.txt", "$(reboot)", "$(touch pwned)", "\x1b[31mred\x1b]0;owned\x07", "new\nline")


@dataclass
class Tools:
    root: Path
    bin: Path
    captures: Path

    def run(self, *command: str) -> None:
        environment = {**os.environ, "CAPTURE_DIR": str(self.captures)}
        subprocess.run(command, check=True, cwd=self.root, env=environment, timeout=120, capture_output=True)

    def sftp(self, *commands: str, options: tuple[str, ...] = ()) -> None:
        batch = self.root / "batch"
        batch.write_text("".join(f"{command}\n" for command in commands))
        self.run("sftp", *options, "-b", str(batch), "-D", str(self.bin / "sftp-server"))

    def scp(self, *arguments: str) -> None:
        self.run("scp", "-q", "-S", str(self.bin / "ssh"), *arguments)

    def connections(self) -> list[tuple[str, list[capture.Record]]]:
        found = capture.logs(self.captures)
        for path in self.captures.iterdir():
            path.unlink()
        return found


@pytest.fixture
def tools(tmp_path: Path) -> Tools:
    assert Path(capture.SFTP_SERVER).exists() and shutil.which("sftp") and shutil.which("scp")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    run_capture = f'exec {sys.executable} {capture.__file__} ssh "$@"'
    for name, body in (("ssh", run_capture), ("sftp-server", run_capture.replace('"$@"', "-s -- local sftp"))):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "captures").mkdir()
    return Tools(tmp_path, bin_dir, tmp_path / "captures")


def replay(observer: SftpObserver | ScpObserver, records: list[capture.Record], seed: int) -> None:
    for direction, data in capture.refragment(records, random.Random(seed)):
        (observer.client_data if direction == "client" else observer.server_data)(data)
    observer.close()


def sftp_seen(records: list[capture.Record], seed: int, **options: int) -> list[Transfer]:
    seen: list[Transfer] = []
    observer = SftpObserver(seen.append, **options)
    replay(observer, records, seed)
    assert observer.failure is None
    return seen


def scp_seen(command: str, records: list[capture.Record], seed: int) -> list[Transfer]:
    seen: list[Transfer] = []
    observer = ScpObserver.for_command(command, seen.append)
    assert observer is not None, command
    replay(observer, records, seed)
    assert observer.failure is None
    return seen


def expected(path: str | Path, direction: str, content: Path, protocol: str) -> Transfer:
    data = content.read_bytes()
    return Transfer(str(path), direction, len(data), hashlib.sha256(data).hexdigest(), True, protocol)  # type: ignore[arg-type]


def by_path(transfer: Transfer) -> str:
    return transfer.path


def make_files(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(15)
    sizes = {"empty": 0, "one": 1, "small.txt": 1000, "big.bin": 5 * 2**20 + 123}
    files = {}
    for name, size in sizes.items():
        files[name] = directory / name
        files[name].write_bytes(rng.randbytes(size))
    return files


def make_tree(root: Path) -> Path:
    """A tree with nested and empty directories and the hostile names."""
    top = root / "tree"
    (top / "sub" / "deeper").mkdir(parents=True)
    (top / "sub" / "hollow").mkdir()
    for number, name in enumerate(HOSTILE_NAMES):
        (top / name).write_bytes(f"{name} #{number}\n".encode())
    (top / "sub" / "deeper" / "data.bin").write_bytes(random.Random(2).randbytes(300_000))
    (top / "sub" / "zero").write_bytes(b"")
    return top


def tree_files(top: Path) -> list[Path]:
    return sorted(path for path in top.rglob("*") if path.is_file())


# --- sftp -------------------------------------------------------------------------------------------------
def test_sftp_put_and_get_in_one_session_are_each_reported_with_the_real_size_and_digest(tools: Tools) -> None:
    local = make_files(tools.root / "local")
    remote = tools.root / "remote"
    remote.mkdir()
    back = tools.root / "back"
    back.mkdir()
    tools.sftp(
        *(f"put {path} {remote / name}" for name, path in local.items()),
        f"ls -l {remote}",  # opendir/readdir and stats: not transfers
        *(f"get {remote / name} {back / name}" for name in local),
    )
    assert all((back / name).read_bytes() == path.read_bytes() for name, path in local.items())
    [(_, records)] = tools.connections()
    want = [expected(remote / name, "upload", path, "sftp") for name, path in local.items()]
    want += [expected(remote / name, "download", path, "sftp") for name, path in local.items()]
    for seed in SEEDS:
        assert sftp_seen(records, seed) == want


def test_sftp_removes_renames_links_chmods_and_directories_are_each_reported_with_the_answer(tools: Tools) -> None:
    remote = tools.root / "remote"
    remote.mkdir()
    for name in ("victim", "plain", "keep"):
        (remote / name).write_text(name)
    hostile = remote / "$(reboot)\x1b[31m"
    tools.sftp(
        f"rm {remote / 'victim'}",
        f"rename {remote / 'plain'} {remote / 'renamed'}",
        f"chmod 4777 {remote / 'renamed'}",
        f"chown 0 {remote / 'keep'}",
        f"symlink /etc/passwd {remote / 'link'}",
        f"ln {remote / 'keep'} {remote / 'hard'}",
        f'mkdir "{hostile}"',
        f'rmdir "{hostile}"',
        f"-rm {remote / 'never-was'}",
        options=("-oBatchMode=yes",),
    )
    assert not (remote / "victim").exists() and (remote / "link").is_symlink()
    assert (remote / "renamed").stat().st_mode & 0o7777 == 0o4777
    [(_, records)] = tools.connections()
    for seed in SEEDS:
        changes: list[Change] = []
        observer = SftpObserver(lambda transfer: None, on_change=changes.append)
        replay(observer, records, seed)
        assert observer.failure is None
        seen = [(c.operation, c.path, c.target, c.status, c.attributes.get("mode"), c.attributes.get("uid"))
                for c in changes]  # fmt: skip
        assert seen == [
            ("remove", f"{remote}/victim", "", "ok", None, None),
            ("rename", f"{remote}/renamed", f"{remote}/plain", "ok", None, None),
            ("setstat", f"{remote}/renamed", "", "ok", "4777", None),
            ("setstat", f"{remote}/keep", "", "ok", None, 0),
            ("symlink", f"{remote}/link", "/etc/passwd", "ok", None, None),
            ("hardlink", f"{remote}/hard", f"{remote}/keep", "ok", None, None),
            ("mkdir", str(hostile), "", "ok", "0777", None),
            ("rmdir", str(hostile), "", "ok", None, None),
            ("remove", f"{remote}/never-was", "", "failed", None, None),
        ], seen
        assert changes[-1].message == "No such file"  # the server's reason


def test_an_sftp_change_the_server_never_answers_is_reported_unanswered_at_close() -> None:
    changes: list[Change] = []
    observer = SftpObserver(lambda transfer: None, on_change=changes.append)
    observer.client_data(packet(1, b"\x00\x00\x00\x03"))  # INIT v3
    observer.server_data(packet(2, b"\x00\x00\x00\x03"))
    observer.client_data(packet(13, (7).to_bytes(4, "big") + sftp_string(b"/srv/b\xffd")))  # REMOVE
    observer.client_data(packet(200, (8).to_bytes(4, "big") + sftp_string(b"evil@example.com")))
    observer.client_data(packet(200, (9).to_bytes(4, "big") + sftp_string(b"other@example.com")))
    observer.client_data(packet(200, (10).to_bytes(4, "big") + sftp_string(b"statvfs@openssh.com")))
    observer.server_data(packet(201, (9).to_bytes(4, "big") + b"reply"))  # EXTENDED_REPLY: it was done
    observer.close()
    assert [(c.operation, c.path, c.status, c.attributes) for c in changes] == [
        ("extended", "", "ok", {"request": "other@example.com"}),
        ("remove", "/srv/b\\xffd", "unanswered", {}),
        ("extended", "", "unanswered", {"request": "evil@example.com"}),
    ]


def sftp_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def packet(kind: int, body: bytes) -> bytes:
    return sftp_string(bytes([kind]) + body)


def test_sftp_replies_out_of_order_are_hashed_in_file_order_within_the_pending_limit(tools: Tools) -> None:
    content = tools.root / "big.bin"
    content.write_bytes(random.Random(3).randbytes(3 * 2**20))
    # Small reads, many in flight: replies come back in bursts that any server may answer in any order.
    tools.sftp(f"get {content} {tools.root / 'copy.bin'}", options=("-B", "4096", "-R", "256"))
    [(_, records)] = tools.connections()
    shuffled = capture.shuffle_replies(records, random.Random(4))
    assert shuffled != capture.sftp_packets(records), "the capture had no burst of replies to reorder"
    want = [expected(content, "download", content, "sftp")]
    seen: list[Transfer] = []
    observer = SftpObserver(seen.append)
    held = 0
    for direction, data in capture.refragment(shuffled, random.Random(5)):
        (observer.client_data if direction == "client" else observer.server_data)(data)
        held = max(held, observer.pending_bytes)
    observer.close()
    assert seen == want
    assert held > 0, "no piece had to wait for an earlier one"

    # The same stream with room for only a few pieces: reported, but as incomplete, and memory stays bounded.
    seen.clear()
    observer = SftpObserver(seen.append, max_pending_bytes=8192)
    for direction, data in capture.refragment(shuffled, random.Random(6)):
        (observer.client_data if direction == "client" else observer.server_data)(data)
        assert observer.pending_bytes <= 8192
    observer.close()
    [transfer] = seen
    assert (transfer.path, transfer.size, transfer.complete) == (str(content), 3 * 2**20, False)
    assert transfer.sha256 != want[0].sha256


def test_scp_in_sftp_mode_is_observed_as_sftp(tools: Tools) -> None:
    local = make_files(tools.root / "local")
    remote = tools.root / "remote"
    remote.mkdir()
    tools.scp(str(local["big.bin"]), str(local["one"]), f"instance:{remote}/")
    tools.scp(f"instance:{remote}/big.bin", str(tools.root / "fetched.bin"))
    upload, download = tools.connections()
    assert upload[0] == download[0] == "sftp"
    assert sftp_seen(upload[1], 7) == [
        expected(remote / "big.bin", "upload", local["big.bin"], "sftp"),
        expected(remote / "one", "upload", local["one"], "sftp"),
    ]
    assert sftp_seen(download[1], 8) == [expected(remote / "big.bin", "download", local["big.bin"], "sftp")]


# --- legacy scp -------------------------------------------------------------------------------------------
def test_legacy_scp_upload_of_several_files_joins_the_target_directory(tools: Tools) -> None:
    local = make_files(tools.root / "local")
    remote = tools.root / "remote"
    remote.mkdir()
    tools.scp("-O", *(str(path) for path in local.values()), f"instance:{remote}")
    [(command, records)] = tools.connections()
    assert command == f"scp -d -t {remote}"
    want = [expected(remote / name, "upload", path, "scp") for name, path in local.items()]
    assert [expected(remote / name, "upload", remote / name, "scp") for name in local] == want  # landed intact
    for seed in SEEDS:
        assert scp_seen(command, records, seed) == want


def test_legacy_scp_single_file_upload_names_the_target_file(tools: Tools) -> None:
    local = make_files(tools.root / "local")
    remote = tools.root / "remote"
    remote.mkdir()
    tools.scp("-O", str(local["small.txt"]), f"instance:{remote}/small.txt")
    [(command, records)] = tools.connections()
    assert scp_seen(command, records, 9) == [expected(remote / "small.txt", "upload", local["small.txt"], "scp")]


def test_legacy_scp_recursive_upload_with_times_and_hostile_names_reports_each_file_as_data(tools: Tools) -> None:
    top = make_tree(tools.root / "local")
    remote = tools.root / "remote"
    remote.mkdir()
    tools.scp("-O", "-r", "-p", str(top), f"instance:{remote}")
    [(command, records)] = tools.connections()
    assert command == f"scp -r -p -t {remote}"
    landed = tree_files(remote / "tree")
    # OpenSSH's scp itself sends a newline in a name as the two characters "\^J"; the rest pass as they are.
    assert {path.name for path in landed} == {*HOSTILE_NAMES[:-1], "new\\^Jline", "data.bin", "zero"}
    want = sorted((expected(path, "upload", path, "scp") for path in landed), key=by_path)
    for seed in SEEDS:
        assert sorted(scp_seen(command, records, seed), key=by_path) == want
    assert not list(tools.root.rglob("pwned")), "a name was executed"


def test_legacy_scp_downloads_a_file_a_quoted_name_and_a_tree(tools: Tools) -> None:
    top = make_tree(tools.root / "remote")
    (tools.root / "local").mkdir()
    quoted = top / "with space.txt"
    tools.scp("-O", f"instance:{top / 'sub' / 'deeper' / 'data.bin'}", str(tools.root / "local"))
    spaced_name = str(quoted).replace(" ", "\\ ")  # the remote shell reads it; scp -O checks what comes back
    tools.scp("-O", f"instance:{spaced_name}", str(tools.root / "local"))
    tools.scp("-O", "-r", "-p", f"instance:{top}", str(tools.root / "local"))
    single, spaced, tree = tools.connections()

    data = top / "sub" / "deeper" / "data.bin"
    assert scp_seen(*single, 10) == [expected(data, "download", data, "scp")]
    assert spaced[0] == f"scp -f {spaced_name}"
    assert scp_seen(*spaced, 11) == [expected(quoted, "download", quoted, "scp")]

    def as_sent(path: Path) -> Path:  # the source side sends a newline in a name as "\^J"
        return path.with_name(path.name.replace("\n", "\\^J"))

    want = sorted((expected(as_sent(path), "download", path, "scp") for path in tree_files(top)), key=by_path)
    assert sorted(scp_seen(*tree, 12), key=by_path) == want
    assert (tools.root / "local" / "tree" / "sub" / "deeper" / "data.bin").read_bytes() == data.read_bytes()
    assert not list(tools.root.rglob("pwned")), "a name was executed"
