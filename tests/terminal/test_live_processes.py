"""Watching across web processes: a moderated terminal served by one daphne, watched from another
process, and a watcher whose web process is killed -9 stops counting (the session pauses).

Real parts: two daphne processes, this test process as a third web process, Redis (channel layer
and presence), the worker and a devcloud host."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import websockets

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from requests_app.models import Grant
from terminal import presence, services
from terminal.models import TerminalSession
from terminal.session_checks import PAUSED_MESSAGE, WAITING_MESSAGE
from tests.stack import Cloud, WorkerProcess, wait_for
from tests.terminal.helpers import Screen, active_request, person_and_approver, session_cookie
from tests.terminal.test_live_feed import fresh_channel_layer, watcher  # noqa: F401  (a fixture)
from tests.terminal.test_web_process_kill import _start_daphne, _until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db", "worker")]


def _statuses(seen: dict[str, Any]) -> list[str]:
    return [e["message"] for e in seen["envelopes"] if e.get("type") == "status"]


def test_a_moderated_terminal_on_one_process_runs_on_a_watcher_of_another_and_pauses_when_it_dies(
    prod: AwsAccount, aws: Cloud, worker: WorkerProcess, tmp_path: Path
) -> None:
    AwsAccount.objects.filter(pk=prod.pk).update(require_session_join=True)
    alice, carol = person_and_approver(prod)
    access_request = active_request(prod, alice, carol)
    grant = Grant.objects.get(request=access_request)
    ticket = services.ticket_issue(user=alice, grant=grant)
    alice_cookie, carol_cookie = session_cookie(alice), session_cookie(carol)
    for name in ("serving", "doomed"):
        (tmp_path / name).mkdir()
    serving, serving_port = _start_daphne(worker, tmp_path / "serving", "")
    doomed, doomed_port = _start_daphne(worker, tmp_path / "doomed", "")
    seen: dict[str, Any] = {"envelopes": [], "output": b""}
    try:

        async def drive() -> None:
            url = f"ws://127.0.0.1:{serving_port}/ws/terminal/{grant.pk}/?ticket={ticket}"
            headers = {"Cookie": alice_cookie, "Origin": f"http://127.0.0.1:{serving_port}"}
            async with websockets.connect(url, additional_headers=headers) as person:
                await _until(person, seen, lambda s: WAITING_MESSAGE in _statuses(s), 60, "waiting for an approver")
                record = await asyncio.to_thread(
                    wait_for, lambda: TerminalSession.objects.filter(grant=grant).first(), what="the row"
                )
                # This process watches: the feed in the daphne process answers it through Redis.
                here = watcher(record.pk, carol_cookie)
                assert (await here.connect(timeout=10))[0]
                onlooker = Screen(here)
                await onlooker.until(lambda s: s.message("reset"), timeout=10, what="the snapshot from daphne")
                await _until(person, seen, lambda s: _statuses(s)[-1] == "Connected.", 10, "the session starting")
                await person.send(json.dumps({"v": 1, "type": "input", "data": "echo across-$((6*7))\r"}))
                await _until(person, seen, lambda s: b"across-42" in s["output"], 20, "the shell's answer")
                await onlooker.until(lambda s: b"across-42" in s.output, timeout=20, what="the watcher seeing it")
                # Another web process watches too; this one leaves.
                far_url = f"ws://127.0.0.1:{doomed_port}/ws/watch/{record.pk}/"
                far_headers = {"Cookie": carol_cookie, "Origin": f"http://127.0.0.1:{doomed_port}"}
                far = await websockets.connect(far_url, additional_headers=far_headers)
                await asyncio.wait_for(far.recv(), 10)  # its first frame: it is in
                await here.disconnect()
                await asyncio.sleep(presence.BEAT_SECONDS + 1)
                assert _statuses(seen)[-1] == "Connected.", "the other process's watcher keeps it running"
                doomed.kill()  # SIGKILL: no disconnect, no goodbye in Redis
                # Its watcher stops counting once its presence lapses: nothing else pauses the session.
                await _until(person, seen, lambda s: _statuses(s)[-1] == PAUSED_MESSAGE, 30, "the pause")

        asyncio.run(drive())
    finally:
        for process in (serving, doomed):
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
    assert LogbookEntry.objects.filter(action="session.watch_started", actor=carol).count() == 2
