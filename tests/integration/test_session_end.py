"""When access ends, the person's Session Manager sessions on the instance end with it.

A tunnel opened through the portal (what `passport proxy` and RDP forwards use) is really
open over the data channel to the host's sshd; removing the grant must close it, and leave
sessions that others own alone. When AWS will not list or end them as the grant is removed, the
user is removed all the same and the sweep (``end_left_sessions``) ends them later, the Logbook
saying each failed try and the end. AWS's refusals are devcloud's, by an explicit Deny on the
portal's role.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import AwsAccount, User
from audit.models import LogbookEntry
from core.errors import RequestRuleError
from fleet import fleet_for
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.services import aws_credentials as issuing
from requests_app.services.provisioning.sessions import grant_end_sessions
from ssmchannel.channel import DataChannel
from ssmchannel.documents import PORT_FORWARDING_DOCUMENT
from ssmchannel.forwarding import PortForwarder
from tests.factories import make_membership, make_user
from tests.sshd import echo_back, echo_server
from tests.stack import Cloud, portal_role_denied, synced_account, wait_for
from workers import tasks

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


def _active_and_ready(access_request: AccessRequest) -> Grant:
    """The request active from now and its one grant ready, as if approved and provisioned."""
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + access_request.duration
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    return Grant.objects.select_related("instance", "request__account", "request__requester").get(
        request=access_request
    )


def test_removing_a_grant_ends_the_person_s_sessions_and_only_theirs(aws: Cloud, db: None, settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    prod = synced_account(aws, "Acme Production")
    # Direct CLI sessions: this test opens the data channel itself, as the CLI's direct path does.
    AwsAccount.objects.filter(pk=prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    alice = make_user("alice")
    make_membership(alice, prod, "admin")
    web = Instance.objects.get(account=prod, name="web-1")
    access_request = services.access_request_create(requester=alice, account=prod, instances=[web], reason="logs")
    grant = _active_and_ready(access_request)

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


# What follows: sessions of ended access that removal could not end. A port forward is the case
# that matters: the SSM agent, not the removed user, dials the port, so removing the user does not
# end it, and a forward to a database would carry data for as long as the session lives.


class LocalForward(threading.Thread):
    """`passport forward` in miniature: 127.0.0.1:<port> -> one multiplexed Session Manager session."""

    def __init__(self, stream_url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.stream_url, self.token = stream_url, token
        self.port = 0
        self.ready = threading.Event()

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        async def open_channel() -> DataChannel:
            return await DataChannel.connect(self.stream_url, self.token, multiplex=True)

        forwarder = PortForwarder(open_channel)
        server = await asyncio.start_server(forwarder.handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        async with server:
            await server.serve_forever()

    def carries(self, data: bytes) -> bytes:
        """What the database behind the forward sends back for ``data`` on a new connection; b"" once
        the session is over."""
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        conn.settimeout(10)
        with conn:
            return echo_back(conn, data)


@dataclass
class Ended:
    """A person's active request on web-1 with a port to a database opened, and its grant."""

    prod: AwsAccount
    alice: User
    request: AccessRequest
    grant: Grant
    database_port: int

    def start(self, document: str = PORT_FORWARDING_DOCUMENT) -> str:
        started = services.grant_start_session(
            grant=self.grant, user=self.alice, document=document, port=self.database_port, via="cli"
        )
        return started["SessionId"]

    def forward(self) -> tuple[str, LocalForward]:
        started = services.grant_start_session(
            grant=self.grant, user=self.alice, document=PORT_FORWARDING_DOCUMENT, port=self.database_port, via="cli"
        )
        forward = LocalForward(started["StreamUrl"], started["TokenValue"])
        forward.start()
        assert forward.ready.wait(10)
        return started["SessionId"], forward

    def end(self) -> None:
        """The person completes the request and the worker removes the grant."""
        services.access_request_complete(access_request=self.request, actor=self.alice)
        services.grant_deprovision(grant_id=self.grant.pk)

    def entries(self, action: str) -> list[dict[str, Any]]:
        return list(
            LogbookEntry.objects.filter(request_id=self.request.pk, action=action)
            .order_by("id")
            .values_list("detail", flat=True)
        )


@pytest.fixture
def ended(aws: Cloud, db: None, settings: Any) -> Iterator[Ended]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    prod = synced_account(aws, "Acme Production")
    alice = make_user("alice")
    make_membership(alice, prod, "admin")
    web = Instance.objects.get(account=prod, name="web-1")
    with echo_server("127.0.0.1") as port:  # a database on the instance, on a port the account opens
        AwsAccount.objects.filter(pk=prod.pk).update(extra_forward_ports=[port])
        access_request = services.access_request_create(
            requester=alice, account=prod, instances=[web], reason="db'; DROP TABLE grants;-- <script>"
        )
        grant = _active_and_ready(access_request)
        yield Ended(prod=prod, alice=alice, request=access_request, grant=grant, database_port=port)
    # devcloud outlives the test: nothing it started stays open for the next one.
    sessions = aws.devcloud.runtime.sessions
    for session in sessions.sessions(prod.account_id, web.region, active=True):
        sessions.terminate(prod.account_id, session["SessionId"])


def _active(aws: Cloud, session_id: str) -> bool:
    session = aws.devcloud.runtime.sessions.get(session_id)
    assert session is not None, session_id
    return bool(session.active)


def _sessions_left(grant: Grant) -> tuple[datetime | None, int]:
    return Grant.objects.filter(pk=grant.pk).values_list("sessions_end_at", "sessions_end_attempts").get()


def test_a_forward_aws_would_not_list_at_removal_is_ended_by_the_sweep(
    ended: Ended, aws: Cloud, time_machine: Any
) -> None:
    session_id, forward = ended.forward()
    assert forward.carries(b"before\n") == b"before\n"

    # DescribeSessions refused once, as the removal runs (a throttle when many requests end at once).
    with portal_role_denied(aws, ended.prod.account_id, "ssm:DescribeSessions"):
        ended.end()

    # The user is removed all the same, and the request settles.
    grant = Grant.objects.get(pk=ended.grant.pk)
    assert grant.status == GrantStatus.REMOVED
    assert grant.username not in aws.host_users("web-1")
    assert AccessRequest.objects.get(pk=ended.request.pk).status == RequestStatus.COMPLETED
    # The session is not: the Logbook says so, naming the kind of failure and nothing of AWS's text.
    [failed] = ended.entries("session.end_failed")
    due, attempts = _sessions_left(grant)
    assert due is not None and attempts == 1
    assert failed == {
        "call": "DescribeSessions",
        "error": "AccessDeniedException",
        "ended": [],
        "failed": {},
        "attempt": 1,
        "next_attempt_at": due.isoformat(),
    }
    assert ended.entries("session.ended_with_access") == []
    assert _active(aws, session_id) and forward.carries(b"still\n") == b"still\n"

    # Not before its backoff: the sweep finds nothing due yet.
    assert tasks.end_left_sessions() == 0
    assert _active(aws, session_id)

    time_machine.move_to(due + timedelta(seconds=1))
    assert tasks.end_left_sessions() == 1

    assert not _active(aws, session_id)
    # The agent closes the data channel as the session ends; the forward carries nothing from then on.
    wait_for(lambda: forward.carries(b"after the end\n") == b"", what="the forward to stop carrying data", timeout=30)
    assert ended.entries("session.ended_late") == [{"session_ids": [session_id], "attempts": 2}]
    assert _sessions_left(grant) == (None, 0)
    # Nothing left: the next runs do nothing and write nothing.
    time_machine.move_to(due + timedelta(hours=2))
    assert tasks.end_left_sessions() == 0
    assert len(ended.entries("session.end_failed")) == 1 and len(ended.entries("session.ended_late")) == 1


def test_one_session_aws_will_not_end_does_not_keep_the_others_open(
    ended: Ended, aws: Cloud, time_machine: Any
) -> None:
    # Three sessions; the middle one's TerminateSession refused, so one is tried before it and one
    # after it whatever order DescribeSessions lists them in.
    first, refused, last = ended.start(), ended.start(), ended.start()
    session_arn = f"arn:aws:ssm:us-east-1:{ended.prod.account_id}:session/{refused}"
    with portal_role_denied(aws, ended.prod.account_id, "ssm:TerminateSession", session_arn):
        ended.end()

    assert not _active(aws, first) and not _active(aws, last)
    assert _active(aws, refused)
    assert Grant.objects.get(pk=ended.grant.pk).status == GrantStatus.REMOVED
    [failed] = ended.entries("session.end_failed")
    assert failed["call"] == "TerminateSession" and failed["error"] == "AccessDeniedException"
    assert sorted(failed["ended"]) == sorted([first, last])
    assert failed["failed"] == {refused: "AccessDeniedException"}
    assert ended.entries("session.ended_with_access") == []

    due, _ = _sessions_left(ended.grant)
    assert due is not None
    time_machine.move_to(due + timedelta(seconds=1))
    assert tasks.end_left_sessions() == 1
    assert not _active(aws, refused)
    assert ended.entries("session.ended_late") == [{"session_ids": [refused], "attempts": 2}]


def test_a_listing_that_fails_for_good_still_removes_the_user(ended: Ended, aws: Cloud, time_machine: Any) -> None:
    session_id = ended.start()
    with portal_role_denied(aws, ended.prod.account_id, "ssm:DescribeSessions"):
        ended.end()
        grant = Grant.objects.get(pk=ended.grant.pk)
        assert grant.status == GrantStatus.REMOVED and grant.cleanup_attempts == 1
        assert grant.username not in aws.host_users("web-1")
        assert AccessRequest.objects.get(pk=ended.request.pk).status == RequestStatus.COMPLETED

        first_due, _ = _sessions_left(grant)
        assert first_due is not None
        [first_try] = LogbookEntry.objects.filter(request_id=ended.request.pk, action="session.end_failed").values_list(
            "created_at", flat=True
        )
        time_machine.move_to(first_due + timedelta(seconds=1))
        assert tasks.end_left_sessions() == 0

        # Tried again and backing off further, never given up; the same refusal is not said again.
        second_due, attempts = _sessions_left(grant)
        assert attempts == 2 and second_due is not None
        assert second_due - first_due > first_due - first_try > timedelta(0)
        assert [entry["attempt"] for entry in ended.entries("session.end_failed")] == [1]
        assert {entry["error"] for entry in ended.entries("session.end_failed")} == {"AccessDeniedException"}
        assert _active(aws, session_id)
        assert ended.entries("session.ended_late") == []


def test_the_sweep_runs_often_on_the_revocation_queue(settings: Any) -> None:
    scheduled = settings.CELERY_BEAT_SCHEDULE["end-left-sessions"]
    assert scheduled["task"] == tasks.end_left_sessions.name
    assert scheduled["schedule"].run_every <= timedelta(minutes=1)
    assert settings.CELERY_TASK_ROUTES[tasks.end_left_sessions.name] == {"queue": settings.PASSPORT_REVOCATION_QUEUE}


def test_a_forward_started_after_removal_with_the_request_s_credentials_is_ended_by_the_sweep(
    ended: Ended, aws: Cloud, time_machine: Any
) -> None:
    # Credentials from the portal (what `passport` hands to the AWS CLI): STS cannot revoke them.
    AwsAccount.objects.filter(pk=ended.prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    ended.request.refresh_from_db()
    scoped = services.access_request_issue_aws_credentials(access_request=ended.request, user=ended.alice).scoped
    assert scoped.expiration < timezone.now() + timedelta(minutes=16)
    recorded = AccessRequest.objects.get(pk=ended.request.pk).aws_credentials_until
    assert recorded == scoped.expiration

    ended.end()  # completed early: no session yet, so none to end at removal
    assert Grant.objects.get(pk=ended.grant.pk).status == GrantStatus.REMOVED
    assert ended.entries("session.ended_with_access") == []

    # The person starts a forward to the database with them after the removal's try. The SSM agent
    # dials the port, so the removed user does not stop it.
    web = ended.grant.instance
    started = fleet_for(ended.prod).start_session(
        web.instance_id,
        web.region,
        PORT_FORWARDING_DOCUMENT,
        {"portNumber": [str(ended.database_port)]},
        credentials=scoped,
    )
    session_id = started["SessionId"]
    assert session_id.startswith(scoped.role_session_name + "-")
    forward = LocalForward(started["StreamUrl"], started["TokenValue"])
    forward.start()
    assert forward.ready.wait(10)
    assert forward.carries(b"after removal\n") == b"after removal\n"

    # The grant is still on the sweep's list, looked at again within its interval, not after a backoff.
    due, attempts = _sessions_left(ended.grant)
    assert due is not None and attempts == 0
    assert due <= timezone.now() + timedelta(seconds=31)
    time_machine.move_to(due + timedelta(seconds=1))
    tasks.end_left_sessions()
    assert not _active(aws, session_id)
    wait_for(lambda: forward.carries(b"after the end\n") == b"", what="the forward to stop carrying data", timeout=30)
    [late] = ended.entries("session.ended_late")
    assert late == {"session_ids": [session_id], "credentials_until": scoped.expiration.isoformat()}
    assert ended.entries("session.end_failed") == []

    # Looked at again while the credentials live; nothing found, nothing written.
    due, attempts = _sessions_left(ended.grant)
    assert due is not None and attempts == 0
    time_machine.move_to(due + timedelta(seconds=1))
    tasks.end_left_sessions()
    assert _sessions_left(ended.grant)[0] is not None
    assert len(ended.entries("session.ended_late")) == 1

    # After the last credentials' expiry and the margin, a last look finds nothing: off the list.
    time_machine.move_to(scoped.expiration + timedelta(minutes=2))
    tasks.end_left_sessions()
    assert _sessions_left(ended.grant) == (None, 0)
    time_machine.move_to(scoped.expiration + timedelta(hours=1))
    assert tasks.end_left_sessions() == 0
    assert len(ended.entries("session.ended_late")) == 1 and ended.entries("session.end_failed") == []


def test_credentials_are_not_handed_out_for_a_request_that_ended_as_they_were_issued(
    ended: Ended, monkeypatch: pytest.MonkeyPatch
) -> None:
    AwsAccount.objects.filter(pk=ended.prod.pk).update(cli_sessions=AwsAccount.CliSessions.DIRECT)
    ended.request.refresh_from_db()
    assume = issuing.assume_scoped

    def completed_meanwhile(*args: Any) -> Any:
        scoped = assume(*args)
        services.access_request_complete(
            access_request=AccessRequest.objects.get(pk=ended.request.pk), actor=ended.alice
        )
        return scoped

    monkeypatch.setattr(issuing, "assume_scoped", completed_meanwhile)
    with pytest.raises(RequestRuleError, match="ended, or its end was brought forward, as the credentials were issued"):
        issuing.access_request_issue_aws_credentials(access_request=ended.request, user=ended.alice)
    assert AccessRequest.objects.get(pk=ended.request.pk).aws_credentials_until is None
    assert not LogbookEntry.objects.filter(action="credentials.issued", request_id=ended.request.pk).exists()


def _sweep_when_due(grant: Grant, time_machine: Any) -> int:
    """The sweep's next run once the grant's next try is due."""
    due, _ = _sessions_left(grant)
    assert due is not None
    time_machine.move_to(due + timedelta(seconds=1))
    return tasks.end_left_sessions()


def test_a_try_after_failed_ones_that_finds_none_left_says_so_and_names_none_as_ended_late(
    ended: Ended, aws: Cloud, time_machine: Any
) -> None:
    session_id = ended.start()
    with portal_role_denied(aws, ended.prod.account_id, "ssm:DescribeSessions"):
        ended.end()
    assert len(ended.entries("session.end_failed")) == 1
    # Meanwhile the session ends by itself (the person closed it): nothing is left for the sweep to end.
    aws.devcloud.runtime.sessions.terminate(ended.prod.account_id, session_id)

    assert _sweep_when_due(ended.grant, time_machine) == 1

    assert ended.entries("session.ended_late") == []
    assert ended.entries("session.none_left") == [{"attempts": 2}]
    assert _sessions_left(ended.grant) == (None, 0)


def test_a_removal_run_that_comes_late_writes_no_failure_for_sessions_already_on_record(
    ended: Ended, aws: Cloud
) -> None:
    ended.start()
    # A removal run that loaded the grant, then lost its lease (a worker stalled); another run took it.
    late = Grant.objects.select_related("instance", "request__account", "request__requester").get(pk=ended.grant.pk)
    with portal_role_denied(aws, ended.prod.account_id, "ssm:DescribeSessions"):
        ended.end()
        on_record = _sessions_left(ended.grant)
        assert on_record[1] == 1
        # From here the sweep has the sessions left; the late run's failed try is not another first one.
        grant_end_sessions(late)

    assert [entry["attempt"] for entry in ended.entries("session.end_failed")] == [1]
    assert _sessions_left(ended.grant) == on_record


def test_a_failure_that_goes_on_is_written_once_per_error_and_tried_all_the_same(
    ended: Ended, aws: Cloud, time_machine: Any
) -> None:
    session_id = ended.start()
    listing = ended.prod.account_id, "ssm:DescribeSessions"
    with portal_role_denied(aws, *listing):
        ended.end()
        for _ in range(4):
            assert _sweep_when_due(ended.grant, time_machine) == 0
    due, attempts = _sessions_left(ended.grant)
    assert attempts == 5 and due is not None  # still tried, backing off, never given up

    # Another failure: DescribeSessions answers, TerminateSession is refused. Said once, too.
    session_arn = f"arn:aws:ssm:us-east-1:{ended.prod.account_id}:session/{session_id}"
    with portal_role_denied(aws, ended.prod.account_id, "ssm:TerminateSession", session_arn):
        for _ in range(2):
            assert _sweep_when_due(ended.grant, time_machine) == 0
    # And the first one again: a change, so said again.
    with portal_role_denied(aws, *listing):
        assert _sweep_when_due(ended.grant, time_machine) == 0

    tries = [(entry["attempt"], entry["call"], entry["error"]) for entry in ended.entries("session.end_failed")]
    assert tries == [
        (1, "DescribeSessions", "AccessDeniedException"),
        (6, "TerminateSession", "AccessDeniedException"),
        (8, "DescribeSessions", "AccessDeniedException"),
    ]
    assert _active(aws, session_id)

    assert _sweep_when_due(ended.grant, time_machine) == 1
    assert not _active(aws, session_id)
    assert ended.entries("session.ended_late") == [{"session_ids": [session_id], "attempts": 9}]
    assert _sessions_left(ended.grant) == (None, 0)
