"""README: "When Redis (the broker) is down, approving, ending and extending still work: the change is
saved and the page (or the API's `queued` field) says its work is queued". That holds for a Redis that
refuses connections (tests/integration/test_many_hosts.py kills it). A Redis that hangs instead (its
host paused or partitioned, the server stuck: here a redis-server of this test's own, SIGSTOPped)
never answered the on-commit publish, and kombu's Redis transport had no socket timeout: the approval
was committed, but the approver's request never answered (and every worker or beat that sends to the
broker blocked the same way: the expiry fan-out, the resume sweep, beat while it holds the lock).
Real processes: daphne and redis-server. The broker's sockets now time out after a few seconds and
a send is retried at most twice: the approval is answered, saying its work is queued."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from django.db import connection

from requests_app import services
from requests_app.apis.common import QUEUED_NOTE
from requests_app.models import AccessRequest, RequestStatus
from tests.conftest import World
from tests.stack import free_port, start_daphne
from tests.terminal.helpers import session_cookie

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("live_db"), pytest.mark.timeout(180)]


@contextmanager
def own_redis() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A redis-server of this test's own, so it can be stopped without touching the suite's."""
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        yield redis, port
    finally:
        redis.send_signal(signal.SIGCONT)
        redis.kill()
        redis.wait(timeout=10)


def test_approving_while_redis_hangs_answers_and_says_queued(world: World, tmp_path: Path) -> None:
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Patch the kernel"
    )
    cookie = session_cookie(world.approver)
    db = connection.settings_dict
    with own_redis() as (redis, redis_port):
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "PASSPORT_ENV": "test",
            "PASSPORT_IAM_CHECK": "false",
            "PASSPORT_VAR_DIR": str(tmp_path / "var"),
        }
        daphne, port = start_daphne(env, tmp_path / "daphne.log")
        try:
            csrf = secrets.token_hex(16)
            headers = {"Cookie": f"{cookie}; csrftoken={csrf}", "X-CSRFToken": csrf}
            redis.send_signal(signal.SIGSTOP)  # hung, not refusing
            started = time.monotonic()
            try:
                answer: requests.Response | None = requests.post(
                    f"http://127.0.0.1:{port}/api/requests/{access_request.pk}/approve/", json={}, headers=headers,
                    timeout=45,
                )  # fmt: skip
            except requests.exceptions.ReadTimeout:
                answer = None
            took = time.monotonic() - started
        finally:
            daphne.kill()
            daphne.wait(timeout=10)
    status = AccessRequest.objects.get(pk=access_request.pk).status
    outcome = "no answer" if answer is None else f"{answer.status_code} {answer.text[:200]}"
    assert answer is not None and answer.status_code == 200 and took < 30, (
        f"approving while Redis hangs: {outcome} after {took:.0f} s (the request is {status} in the database)"
    )
    assert answer.json()["queued"] == QUEUED_NOTE  # the sweep sends it once Redis answers again
    assert status == RequestStatus.APPROVED
