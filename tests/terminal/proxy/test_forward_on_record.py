"""An ``ssh -L`` connection through the recording proxy is on record as it opens (``forward.opened``,
its target, before a byte passes), not only as it closes; when the web process serving it dies
(SIGKILL: the OOM killer, a host lost, a deploy's kill) the orphan sweep ends it on record
(``forward.closed``, ``"reason": "interrupted"``), as it seals that process's terminals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from terminal.models import ProxyForward
from terminal.sweeps import forwards_finalise_orphaned
from tests.sshd import echo_back, echo_server, sshd_available
from tests.stack import WorkerProcess, open_forward_ports, start_daphne, stop_process, wait_for
from tests.terminal.proxy.conftest import forwards_open, proxied_request

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("live_db", "worker"),
    pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available())),
]


def _entries(request_id: int, action: str, target: str) -> list[LogbookEntry]:
    return list(LogbookEntry.objects.filter(request_id=request_id, action=action, detail__target=target))


def test_a_forward_that_carried_data_is_on_record_though_its_web_process_died(
    prod: AwsAccount, worker: WorkerProcess, tmp_path: Path, settings: Any
) -> None:
    env = {**worker.env, "PASSPORT_VAR_DIR": str(tmp_path / "var"), "PASSPORT_RECORDING_CHUNK_SECONDS": "1",
           "DJANGO_ALLOW_ASYNC_UNSAFE": ""}  # fmt: skip
    process, port = start_daphne(env, tmp_path / "daphne.log")
    try:
        with echo_server("127.0.0.1") as database_port:
            open_forward_ports(prod, [database_port])
            proxied = proxied_request(prod, f"http://127.0.0.1:{port}", tmp_path)
            target = f"127.0.0.1:{database_port}"
            with forwards_open(proxied, target) as opened:
                # On record while open, before the process dies.
                opening = _entries(proxied.access_request.pk, "forward.opened", target)
                assert len(opening) == 1 and opening[0].detail["port"] == database_port
                assert echo_back(opened.connections[0], b"SELECT secrets\n") == b"SELECT secrets\n"
                process.kill()  # the web process dies with the forward open
                process.wait(timeout=10)
    finally:
        stop_process(process)
    # The orphan sweep (the beat task finalise_orphaned_terminals runs it) ends it on record, once its
    # heartbeat is stale: run here, as test_web_process_kill runs the terminals' sweep, with a short limit.
    settings.PASSPORT_RECORDING_STALE_SECONDS = 3

    def swept() -> list[LogbookEntry]:
        forwards_finalise_orphaned()
        return _entries(proxied.access_request.pk, "forward.closed", target)

    closed = wait_for(swept, timeout=30, what="the sweep's entry")
    assert len(closed) == 1
    assert closed[0].detail["reason"] == "interrupted" and closed[0].detail["sealed_by"] == "sweep"
    assert closed[0].detail["forward"] == opening[0].detail["forward"]
    assert ProxyForward.objects.get(pk=opening[0].detail["forward"]).ended_at is not None


def test_a_forward_that_closes_is_on_record_once_each_way(prod: AwsAccount, daphne: str, tmp_path: Path) -> None:
    with echo_server("127.0.0.1") as database_port:
        open_forward_ports(prod, [database_port])
        proxied = proxied_request(prod, daphne, tmp_path)
        target = f"127.0.0.1:{database_port}"
        with forwards_open(proxied, target):
            pass
    closed = wait_for(lambda: _entries(proxied.access_request.pk, "forward.closed", target), what="forward.closed")
    (opened,) = _entries(proxied.access_request.pk, "forward.opened", target)
    assert opened.pk < closed[0].pk and closed[0].detail["forward"] == opened.detail["forward"]
    assert closed[0].detail["bytes_to_instance"] >= len(b"before\n")
    assert ProxyForward.objects.get(pk=opened.detail["forward"]).ended_at is not None
