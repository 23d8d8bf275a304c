"""Talking to the terminal's WebSocket the way a browser does: a session cookie, an Origin, a ticket;
and an active request with a ready grant on devcloud's web-1 to open it on. Or terminal.session.ShellSession
driven directly, with no Channels and no WebSocket: ``shell_session``, its page a ``ListBrowser``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.models import AwsAccount, User
from fleet.selection import fleet_for
from passport_portal.asgi import application
from requests_app import services as request_services
from requests_app.models import AccessRequest, Grant, Instance, RequestStatus
from terminal import services as terminal_services
from terminal.session import ShellSession
from tests.factories import make_membership, make_user
from tests.stack import Cloud, wait_for

ORIGIN = "http://testserver"


def active_request(prod: AwsAccount, requester: User, approver: User) -> AccessRequest:
    """``requester``'s request for web-1, approved by ``approver`` and provisioned by the worker."""
    web = Instance.objects.get(account=prod, name="web-1")
    access_request = request_services.access_request_create(
        requester=requester, account=prod, instances=[web], reason="browser terminal test"
    )
    request_services.access_request_approve(access_request=access_request, approver=approver)
    wait_for(lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.ACTIVE, what="active")
    access_request.refresh_from_db()
    return access_request


def person_and_approver(prod: AwsAccount) -> tuple[User, User]:
    """Alice Admin, an Admin of ``prod``, and Carol Approver, who may approve (and watch) on it."""
    alice = make_user("alice", first_name="Alice", last_name="Admin")
    carol = make_user("carol", first_name="Carol", last_name="Approver")
    make_membership(alice, prod, "admin")
    make_membership(carol, prod, "admin", can_approve=True)
    return alice, carol


def watched_grant(prod: AwsAccount) -> tuple[User, Grant]:
    """``person_and_approver``'s Carol, and Alice's ready grant on web-1, which Carol approved (and may watch)."""
    alice, carol = person_and_approver(prod)
    return carol, Grant.objects.select_related("instance", "request").get(request=active_request(prod, alice, carol))


def ready_grant(prod: AwsAccount) -> tuple[User, User, AccessRequest, Grant]:
    """alice (Admin) with an active request on web-1, approved by approver; and its ready grant."""
    alice, approver = make_user("alice"), make_user("approver")
    make_membership(alice, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = active_request(prod, alice, approver)
    grant = Grant.objects.select_related("instance", "request").get(request=access_request)
    return alice, approver, access_request, grant


def devcloud_ssm_session(aws: Cloud, grant: Grant, host: str = "web-1") -> str:
    """The id of a Session Manager session devcloud started on its ``host`` for ``grant``, whose
    host becomes that one (a unit test's account is devcloud's Acme Production by its id), as the
    grant's terminal would have: what ends it is then a real TerminateSession."""
    item = next(item for item in aws.manifest["instances"] if item["name"] == host)
    Instance.objects.filter(pk=grant.instance_id).update(instance_id=item["id"], region=item["region"])
    grant.instance.refresh_from_db()
    started = fleet_for(grant.request.account).start_session(
        item["id"], item["region"], "AWS-StartSSHSession", {"portNumber": ["22"]}
    )
    return started["SessionId"]


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def ticketed_grant(prod: AwsAccount) -> tuple[User, AccessRequest, Grant, str, str]:
    """``ready_grant``'s alice, her request and its grant; with her session cookie and a ticket
    to open the grant's terminal."""
    alice, _approver, access_request, grant = ready_grant(prod)
    ticket = terminal_services.ticket_issue(user=alice, grant=grant)
    return alice, access_request, grant, session_cookie(alice), ticket


def communicator(grant_id: int, ticket: str = "", *, cookie: str | None = None, origin: str = ORIGIN) -> Any:
    headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    path = f"/ws/terminal/{grant_id}/" + (f"?ticket={ticket}" if ticket else "")
    return WebsocketCommunicator(application, path, headers=headers)


class Screen:
    """What a browser would have received: output bytes, JSON messages, whether it was closed."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.output = b""
        self.messages: list[dict[str, Any]] = []
        self.closed_code: int | None = None

    async def until(self, predicate: Any, *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed_code is not None:
                raise AssertionError(
                    f"no {what} within {timeout} s; messages={self.messages} output={self.output[-500:]!r}"
                )
            try:
                event = await self.comm.receive_output(timeout=remaining)
            except TimeoutError as exc:
                raise AssertionError(f"no {what} within {timeout} s; messages={self.messages}") from exc
            if event["type"] == "websocket.close":
                self.closed_code = event.get("code", 1000)
            elif event.get("bytes") is not None:
                self.output += event["bytes"]
            elif event.get("text") is not None:
                self.messages.append(json.loads(event["text"]))

    def message(self, kind: str) -> dict[str, Any] | None:
        return next((message for message in self.messages if message.get("type") == kind), None)


async def open_shell(grant_id: int, ticket: str, cookie: str) -> Screen:
    """The grant's terminal opened as a browser opens it, once the shell is logged in (``ready``)."""
    comm = communicator(grant_id, ticket, cookie=cookie)
    connected, _ = await comm.connect(timeout=10)
    assert connected
    screen = Screen(comm)
    await screen.until(lambda s: s.message("ready"), timeout=60, what="a logged-in shell")
    return screen


class ListBrowser:
    """What a browser would have been sent, in order; ``until`` waits for some of it."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.output = b""
        self.closed_with: int | None = None
        self._changed = asyncio.Event()

    async def send_text(self, text: str) -> None:
        self.envelopes.append(json.loads(text))
        self._changed.set()

    async def send_bytes(self, data: bytes) -> None:
        self.output += data
        self._changed.set()

    async def close(self, code: int) -> None:
        self.closed_with = code
        self._changed.set()

    def envelope(self, kind: str) -> dict[str, Any] | None:
        return next((item for item in self.envelopes if item.get("type") == kind), None)

    async def until(self, predicate: Callable[[ListBrowser], Any], *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {what} within {timeout} s; sent={self.envelopes} output={self.output[-300:]!r}"
                )
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                continue


def signed_in_key(user: User) -> str:
    """The key of a Django session ``user`` is signed in with."""
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def shell_session(user: User, grant: Grant, browser: ListBrowser) -> ShellSession:
    """``user``'s terminal on ``grant``, signed in, ``browser`` its page: made outside the event loop
    (signing in is ORM work), opened inside it with ``shell_logged_in``."""
    return ShellSession(user=user, grant_id=grant.pk, session_key=signed_in_key(user), browser=browser)


async def shell_logged_in(session: ShellSession, browser: ListBrowser) -> None:
    """``session`` loaded and started, once its shell is logged in (``ready`` sent to ``browser``)."""
    assert await session.load()
    session.start()
    await browser.until(lambda b: b.envelope("ready"), timeout=60, what="a logged-in shell")
