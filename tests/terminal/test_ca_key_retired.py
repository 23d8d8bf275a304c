"""A user CA key retired (rotated away, then retired by force: a compromised key) while a browser
terminal runs on the login certificate it signed: sshd does not re-check the connection it let in,
so the terminal is ended, on record as ``session.terminated`` (``ca_key_retired``) and
``terminal.ended`` with the message it was closed with. A retirement of a key that signed none of
its certificates leaves it open. Real daphne-less ASGI, worker, devcloud."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.test import Client

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from sshca.models import CaKey
from sshca.services import ca_retire, ca_rotate
from terminal import services
from terminal.models import TerminalSession
from tests.stack import Cloud, wait_for
from tests.terminal.helpers import Screen, communicator, ready_grant


def _retire_active_ed25519_key() -> str:
    old = CaKey.objects.get(purpose="user", key_type="ed25519", state=CaKey.State.ACTIVE)
    ca_rotate(key_type="ed25519")
    ca_retire(fingerprint=old.fingerprint, force=True)
    return old.fingerprint


def _retire_the_rsa_key() -> None:
    # It signed nothing of this terminal's (the login is Ed25519): the terminal stays open.
    old = CaKey.objects.get(purpose="user", key_type="rsa", state=CaKey.State.ACTIVE)
    ca_rotate(key_type="rsa")
    ca_retire(fingerprint=old.fingerprint, force=True)


@pytest.mark.integration
@pytest.mark.usefixtures("live_db", "worker")
def test_retiring_the_ca_key_that_signed_a_terminals_login_closes_it(
    prod: AwsAccount, aws: Cloud, settings: Any, tmp_path: Any
) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    alice, _approver, access_request, grant = ready_grant(prod)
    client = Client()
    client.force_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    ticket = services.ticket_issue(user=alice, grant=grant)
    retired: list[str] = []

    async def session() -> Screen:
        comm = communicator(grant.pk, ticket, cookie=cookie)
        assert (await comm.connect(timeout=10))[0]
        screen = Screen(comm)
        await screen.until(lambda s: s.message("ready"), timeout=60, what="a logged-in shell")
        await database_sync_to_async(_retire_the_rsa_key)()
        await comm.send_to(bytes_data=b"echo still-open-$((6*7))\r")
        await screen.until(lambda s: b"still-open-42" in s.output, timeout=20, what="the echo after the RSA key")
        assert screen.closed_code is None
        retired.append(await database_sync_to_async(_retire_active_ed25519_key)())
        await screen.until(lambda s: s.closed_code is not None, timeout=15, what="the close after the retirement")
        await comm.disconnect(code=4000, timeout=15)
        return screen

    screen = async_to_sync(session)()
    assert screen.message("closed") == {"v": 1, "type": "closed", "reason": services.CA_KEY_RETIRED_MESSAGE}
    terminated = LogbookEntry.objects.get(action="session.terminated", request_id=access_request.pk)
    assert terminated.detail["reason"] == services.CA_KEY_RETIRED
    assert terminated.detail["fingerprint"] == retired[0]
    assert (terminated.detail["client"], terminated.detail["certificate"]) == ("browser", "login")
    record = wait_for(
        lambda: TerminalSession.objects.filter(grant=grant, ended_at__isnull=False).first(), what="the session record"
    )
    assert record.end_reason == services.CA_KEY_RETIRED_MESSAGE
    ended = LogbookEntry.objects.get(action="terminal.ended", request_id=access_request.pk)
    assert ended.detail["reason"] == services.CA_KEY_RETIRED_MESSAGE
