"""When access ends, the person's Session Manager sessions on the instance end with it.

A tunnel opened through the portal (what `passport proxy` and RDP forwards use) is really
open over the data channel to the host's sshd; removing the grant must close it, and leave
sessions that others own alone.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from fleet import fleet_for
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from ssmchannel.channel import DataChannel
from tests.factories import make_membership, make_user
from tests.stack import Cloud, synced_account, wait_for

pytestmark = pytest.mark.integration


class Tunnel(threading.Thread):
    """One data channel held open in its own event loop, reading until the far end closes it."""

    def __init__(self, stream_url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.stream_url, self.token = stream_url, token
        self.greeting = b""
        self.opened = threading.Event()
        self.closed_reason: str | None = None

    def run(self) -> None:
        asyncio.run(self._hold())

    async def _hold(self) -> None:
        channel = await DataChannel.connect(self.stream_url, self.token)
        try:
            self.greeting = await asyncio.wait_for(channel.read(), timeout=30)
            self.opened.set()
            while await channel.read():
                pass
            self.closed_reason = channel.closed_reason or "closed"
        finally:
            await channel.close(terminate=False)


def test_removing_a_grant_ends_the_person_s_sessions_and_only_theirs(aws: Cloud, db: None, settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    prod = synced_account(aws, "Acme Production")
    # Direct CLI sessions: this test opens the data channel itself, as the CLI's direct path does.
    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    alice = make_user("alice")
    make_membership(alice, prod, "admin")
    web = Instance.objects.get(account=prod, name="web-1")
    access_request = services.access_request_create(requester=alice, account=prod, instances=[web], reason="logs")
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + access_request.duration
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    grant = Grant.objects.select_related("instance", "request__account", "request__requester").get(
        request=access_request
    )

    mine = services.grant_start_session(grant=grant, user=alice, document="AWS-StartSSHSession", via="cli")
    tunnel = Tunnel(mine["StreamUrl"], mine["TokenValue"])
    tunnel.start()
    assert tunnel.opened.wait(30), "the tunnel to the host's sshd did not open"
    assert tunnel.greeting.startswith(b"SSH-2.0-")  # really through to sshd
    # A session someone else owns on the same instance (here: the portal's own role).
    theirs = fleet_for(prod).start_session(web.instance_id, web.region, "AWS-StartSSHSession", {"portNumber": ["22"]})

    services.access_request_complete(access_request=access_request, actor=alice)
    Grant.objects.filter(pk=grant.pk).update(status=GrantStatus.REMOVING)
    services.grant_deprovision(grant_id=grant.pk)

    sessions = aws.devcloud.runtime.sessions
    assert not sessions.get(mine["SessionId"]).active
    assert sessions.get(theirs["SessionId"]).active
    tunnel.join(30)
    assert not tunnel.is_alive() and tunnel.closed_reason, "the tunnel must be closed by the far end"
    ended = LogbookEntry.objects.get(action="session.ended_with_access", request_id=access_request.pk)
    assert ended.detail == {"session_ids": [mine["SessionId"]]}
    assert Grant.objects.get(pk=grant.pk).status == GrantStatus.REMOVED
    fleet_for(prod).terminate_session(theirs["SessionId"], web.region)
    wait_for(lambda: not sessions.get(theirs["SessionId"]).active, what="the other session to end", timeout=10)
