"""Who may open the CLI's recording SSH proxy, and on which grant.

The route ``/ws/cli/requests/<request>/grants/<instance>/ssh/`` is for the passport CLI, which
sends neither an Origin nor a cookie: it is authenticated only by its bearer token
(``Authorization: Bearer <token>``, decided as the API decides it:
``accounts.authentication.bearer_token_live``, a refusal on record as ``cli.token_refused``). The
connection then runs with the token marked (``audit.origin``): every Logbook entry it writes names
it (``cli_token``). ``CliProxyGate`` sends such handshakes past the browser's same-Origin check and
session authentication; a handshake on this route that carries a cookie is refused (a browser
page of another site could otherwise ride on someone's session), and every other path goes to
the browser's stack unchanged.

Refusals are decided here (``grant_for_proxy``) and said by the consumer: it accepts the
socket, sends ``{"type": "refused", "reason": ...}`` and closes with the code.

The token is checked at the handshake; what ends the connection later is a message, or the
token's end. The consumer joins the token's group (``terminal.services.token_group``), which hears
``cli.sign_in_revoked`` when the token is revoked (accounts.cli_tokens), and re-reads the token
once it has joined (``token_still_live``), so a revocation committed in between is not missed.
The connection keeps the token's end (``SCOPE_SIGN_IN_ENDS``): it closes then, refuses new
channels after it, and re-reads the token at its periodic check (terminal.proxy.session).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.http import Http404, HttpRequest

from accounts.authentication import MALFORMED_MESSAGE, bearer_token_live
from accounts.models import ApiToken, AwsAccount, User
from audit.origin import logbook_cli_token_as
from core.errors import NotAllowed, RequestRuleError
from requests_app.iam import iam_check_grant
from requests_app.models import Grant, GrantStatus, Instance, RequestStatus
from requests_app.selectors import grant_get_by_instance
from requests_app.services.credentials import check_may_use
from ssmchannel.documents import SSH_DOCUMENT

CLI_PREFIX = "/ws/cli/"
CLI_PATH = re.compile(r"/ws/cli/requests/(?P<request_id>[0-9]{1,18})/grants/(?P<instance_id>[A-Za-z0-9-]{1,64})/ssh/")
SCOPE_USER = "cli_user"
SCOPE_SIGN_IN = "cli_sign_in"  # the ApiToken's id: its revocation closes the connection (services.token_group)
SCOPE_SIGN_IN_ENDS = "cli_sign_in_ends"  # the ApiToken's expires_at: the connection ends then too
SCOPE_REFUSAL = "cli_refusal"

# Close codes of the route (the CLI reads them; see passport_cli.proxy_socket).
CLOSE_ENDED = 4000  # the session ended: the request ended, an approver terminated it, the SSH side closed
CLOSE_BAD_FRAME = 4400  # a text frame from the CLI: nothing but raw SSH bytes is accepted
CLOSE_UNAUTHENTICATED = 4401  # no, unknown, revoked or expired bearer token (also: revoked while open)
CLOSE_COOKIE = 4402  # a cookie on this route: refused, the route is for the CLI's token only
CLOSE_FORBIDDEN = 4403  # not the requester, or IAM no longer allows it
CLOSE_NOT_FOUND = 4404  # no such grant in a request this person may see
CLOSE_NOT_LINUX = 4406  # a Windows instance: no SSH
CLOSE_DIRECT = 4409  # the account's CLI sessions are "direct": the CLI uses the data channel itself
CLOSE_NOT_USABLE = 4410  # the request is not active or the user on the instance is not ready
CLOSE_TOO_MANY_SESSIONS = 4429  # the person has as many sessions open as they may (terminal.slots)
CLOSE_UNAVAILABLE = 4503  # the portal could not reach the instance, or recording storage is down


@dataclass(frozen=True)
class Refusal:
    code: int
    reason: str


def _headers(scope: dict[str, Any]) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name.decode("latin1").lower(), []).append(value)
    return found


def scope_path(scope: dict[str, Any]) -> str:
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


def scope_request(scope: dict[str, Any]) -> HttpRequest:
    """The handshake as far as ``audit.refusals.client_source`` reads a request: the peer's address and
    the X-Forwarded-For of our proxies (from any other peer the headers were dropped before the gate:
    ``passport_portal.proxies.ForwardedHeadersAsgiMiddleware``)."""
    request = HttpRequest()
    client = scope.get("client") or ("", 0)
    request.META["REMOTE_ADDR"] = str(client[0] or "")
    forwarded = _headers(scope).get("x-forwarded-for", [])
    if forwarded:
        request.META["HTTP_X_FORWARDED_FOR"] = b",".join(forwarded).decode("latin1")
    return request


def token_user(scope: dict[str, Any]) -> ApiToken | Refusal:
    """The CLI bearer token of the handshake (its person selected with it), as BearerTokenAuthentication
    decides it: a refused token is on record as the API's (``cli.token_refused``)."""
    header_values = _headers(scope).get("authorization", [])
    if len(header_values) != 1:
        return Refusal(CLOSE_UNAUTHENTICATED, "Sign in with `passport auth login`: no bearer token was sent.")
    parts = header_values[0].split()
    if len(parts) != 2 or parts[0].lower() != b"bearer":
        return Refusal(CLOSE_UNAUTHENTICATED, MALFORMED_MESSAGE)
    found = bearer_token_live(parts[1], request=scope_request(scope))
    return Refusal(CLOSE_UNAUTHENTICATED, found) if isinstance(found, str) else found


def token_still_live(token_id: int) -> bool:
    """Re-read once the connection listens for revocations: one committed meanwhile must not be missed."""
    return ApiToken.objects.filter(pk=token_id).exists()


def grant_for_proxy(*, user: User, request_id: int, instance_id: str) -> Grant | Refusal:
    """The person's own ready grant of an active request, if the proxy may carry SSH to it now."""
    try:
        grant = grant_get_by_instance(user=user, request_pk=request_id, instance_id=instance_id)
    except Http404:
        return Refusal(CLOSE_NOT_FOUND, f"Request {request_id} has no instance {instance_id} you can see.")
    access_request = grant.request
    try:
        # The requester only: another who may see the request (an approver) is refused on record.
        check_may_use(access_request, user, purpose="session", grant=grant)
    except NotAllowed as exc:
        return Refusal(CLOSE_FORBIDDEN, str(exc))
    if grant.platform != Instance.Platform.LINUX:
        return Refusal(CLOSE_NOT_LINUX, "SSH is for Linux instances; Windows access uses Remote Desktop.")
    if access_request.account.cli_sessions == AwsAccount.CliSessions.DIRECT:
        return Refusal(
            CLOSE_DIRECT,
            "CLI sessions on this account are direct (not recorded): use the Session Manager data channel.",
        )
    # Past its end time the request reads as expired, whether or not the expiry sweep has run.
    status = access_request.status_at()
    if status != RequestStatus.ACTIVE or grant.status != GrantStatus.READY:
        return Refusal(
            CLOSE_NOT_USABLE,
            f"The request is {RequestStatus(status).label.lower()} and the user on the instance is "
            f"{grant.get_status_display().lower()}: SSH needs an active request and a ready user.",
        )
    try:
        iam_check_grant(grant=grant, user=user, purpose="session", document=SSH_DOCUMENT)
    except RequestRuleError as exc:
        return Refusal(CLOSE_FORBIDDEN, str(exc))
    return grant


async def _refuse_handshake(receive: Any, send: Any) -> None:
    message = await receive()
    if message.get("type") == "websocket.connect":
        await send({"type": "websocket.close", "code": CLOSE_COOKIE})


class CliProxyGate:
    """ASGI middleware in front of every WebSocket: the CLI's route by token, the rest by the browser stack.

    A CLI handshake that sends a cookie is closed before it opens; otherwise the token's person
    (or the refusal) goes in the scope for the consumer, which says why before closing.
    """

    def __init__(self, *, cli: Any, browser: Any) -> None:
        self.cli = cli
        self.browser = browser

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") != "websocket" or not scope_path(scope).startswith(CLI_PREFIX):
            return await self.browser(scope, receive, send)
        headers = _headers(scope)
        if "cookie" in headers:
            return await _refuse_handshake(receive, send)
        found = await database_sync_to_async(token_user)(scope)
        if isinstance(found, Refusal):
            return await self.cli({**scope, SCOPE_REFUSAL: found}, receive, send)
        extra = {SCOPE_USER: found.user, SCOPE_SIGN_IN: found.pk, SCOPE_SIGN_IN_ENDS: found.expires_at}
        # Every Logbook entry the connection writes (its refusals, its session, the portal's login to the
        # instance, its forwards) names the token, as the API's entries do (audit.origin); the connection
        # runs in this task and the tasks and sync calls it starts, which carry the mark with them.
        with logbook_cli_token_as(found.pk):
            return await self.cli({**scope, **extra}, receive, send)
