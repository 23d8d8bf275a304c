"""Every signed-in session ends at a fixed time, however often it is used or written.

Django moves a session's expiry SESSION_COOKIE_AGE ahead each time the session is saved, so a
session written now and then would never end: a person removed at the identity provider (whose
memberships are synced only at sign-in) would keep their access and keep minting CLI tokens.
So every sign-in (SAML, allauth's page, the admin's sign-in: anything that calls Django's
``login()``) stamps the session with its time, and every use of it, a page, an API call made
with the session, or a session WebSocket, ends it once it is older than
``PASSPORT_SESSION_MAX_AGE_SECONDS`` (default: ``SESSION_COOKIE_AGE``) or past the end its
identity provider set (SAML's ``SessionNotOnOrAfter``), whichever comes first.

A CLI token a session confirms (``passport auth login``) ends no later than that session.

A session signed in through a SAML identity provider also ends at its first use after that
provider stops being one people may sign in with (disabled or deleted in the admin, or taken out of
``PASSPORT_SAML_IDPS``): ``"reason": "idp_disabled"``; and, for good, once it is no longer the
provider it was at the sign-in, whose trust (entity id, certificate (for a metadata URL's IdP:
those its metadata named when last read), metadata URL, and an admin row's trust generation, which
moves on when it is disabled: accounts.saml.config) the session records: ``"reason":
"idp_replaced"``. So an IdP disabled and enabled again, or given a new certificate, does not bring
back a session it signed in before, used meanwhile or not. A SAML session that records no trust
(signed in before this rule) ends the same way. (An IdP taken out of the settings and put back as
it was is the same trust: its sessions live on once it is back.)
(accounts.saml.withdrawal ends the rest it vouched for at once: CLI tokens, codes confirmed, open
terminals.)

A session signed in before this rule has no stamp: its lifetime starts when it is first seen.
Ending one is a sign-out like any other (``user_logged_out``: open terminals close) and is
``auth.signed_out`` in the Logbook, ``"by": "session_limit"``.

Django never deletes a stored session itself: one past its expiry (the cookie's, which a write
moves), signed in or not, stays in the database until the hourly sweep (``sessions_expired_purge``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY, logout
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_out
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from accounts.saml.config import identity_provider_trust_of, trust_verdict
from audit.services import logbook_append

SIGNED_IN_AT_KEY = "passport_signed_in_at"  # epoch seconds of the sign-in (or of first sight)
IDP_SESSION_END_KEY = "passport_idp_session_end"  # epoch seconds: the IdP's SessionNotOnOrAfter
# How a SAML sign-in was made ({"idp": slug, "name_id": ..., ...}): accounts.saml.views writes it at
# sign-in, for single logout, and which IdP it names is what the session lives by here.
SAML_SIGN_IN_KEY = "saml"
# In that: the IdP's trust when it signed the session in (accounts.saml.config.identity_provider_trust).
SAML_TRUST_KEY = "trust"


def session_sign_in_stamp(*, session: SessionBase) -> None:
    """A sign-in starts the session's lifetime afresh (and forgets an earlier IdP's end, and which
    IdP signed it in before: a SAML sign-in names its own after this)."""
    session[SIGNED_IN_AT_KEY] = timezone.now().timestamp()
    session.pop(IDP_SESSION_END_KEY, None)
    session.pop(SAML_SIGN_IN_KEY, None)


def session_idp_end_set(*, session: SessionBase, ends_at: datetime | None) -> None:
    """The identity provider said when the session it vouched for must end."""
    if ends_at is not None:
        session[IDP_SESSION_END_KEY] = ends_at.timestamp()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _deadline(data: Mapping[str, Any], signed_in_at: float) -> tuple[float, float, str]:
    ends_at, reason = signed_in_at + settings.PASSPORT_SESSION_MAX_AGE_SECONDS, "max_age"
    idp_end = _number(data.get(IDP_SESSION_END_KEY))
    if idp_end is not None and idp_end < ends_at:
        ends_at, reason = idp_end, "idp_session_end"
    return signed_in_at, ends_at, reason


def session_deadline(*, session: SessionBase) -> tuple[float, float, str]:
    """(signed in at, ends at, why it ends then) in epoch seconds; a session with no stamp is
    stamped now, its first sight."""
    signed_in_at = _number(session.get(SIGNED_IN_AT_KEY))
    if signed_in_at is None:
        signed_in_at = timezone.now().timestamp()
        session[SIGNED_IN_AT_KEY] = signed_in_at
    return _deadline(session, signed_in_at)


def session_idp_slug(data: Mapping[str, Any]) -> str | None:
    """The slug of the SAML identity provider this session was signed in through; None for another
    sign-in (a password, the admin's)."""
    info = data.get(SAML_SIGN_IN_KEY)
    slug = info.get("idp") if isinstance(info, Mapping) else None
    return slug if isinstance(slug, str) and slug else None


def session_idp_trust(data: Mapping[str, Any]) -> str | None:
    """The trust this session recorded of the IdP that signed it in (accounts.saml.config.
    identity_provider_trust); None when it names none (not SAML, or signed in before it was kept).
    A CLI code the session confirms records it too (accounts.cli_services)."""
    info = data.get(SAML_SIGN_IN_KEY)
    trust = info.get(SAML_TRUST_KEY) if isinstance(info, Mapping) else None
    return trust if isinstance(trust, str) and trust else None


def _idp_withdrawn(data: Mapping[str, Any], idp_trusts: dict[str, str | None] | None = None) -> tuple[str, str] | None:
    """(slug, reason) when the IdP that signed this session in is no longer the one it trusted then:
    ``idp_disabled`` while people may not sign in through it, ``idp_replaced`` when it is another
    now (disabled since, even if enabled again; its certificate or entity id changed) or the session
    names no trust (signed in before sessions recorded one). ``idp_trusts`` remembers the IdPs'
    trust across calls (one query per IdP for many sessions)."""
    slug = session_idp_slug(data)
    if slug is None:
        return None
    known = {} if idp_trusts is None else idp_trusts
    if slug not in known:
        known[slug] = identity_provider_trust_of(slug)
    verdict = trust_verdict(known[slug], session_idp_trust(data))
    return None if verdict is None else (slug, verdict)


def session_data_past_limit(*, data: Mapping[str, Any], idp_trusts: dict[str, str | None] | None = None) -> bool:
    """For a reader of stored session data that must not write it (an open terminal's sign-in
    check): whether it is past its end, or its identity provider is no longer the one it trusted
    (``idp_trusts``: as ``_idp_withdrawn``). One not stamped yet is not past its end; its first use
    stamps it."""
    signed_in_at = _number(data.get(SIGNED_IN_AT_KEY))
    if signed_in_at is not None and timezone.now().timestamp() >= _deadline(data, signed_in_at)[1]:
        return True
    return _idp_withdrawn(data, idp_trusts) is not None


def _ended_detail(signed_in_at: float, ends_at: float, reason: str) -> dict[str, Any]:
    return {
        "by": "session_limit",
        "reason": reason,
        "signed_in_at": datetime.fromtimestamp(signed_in_at, UTC).isoformat(),
        "ended_at": datetime.fromtimestamp(ends_at, UTC).isoformat(),
    }


def _over(session: SessionBase) -> dict[str, Any] | None:
    """Why this signed-in session is over (its Logbook detail); None while it may go on."""
    if session.get(SESSION_KEY) is None:
        return None
    signed_in_at, ends_at, reason = session_deadline(session=session)
    now = timezone.now().timestamp()
    if now >= ends_at:
        return _ended_detail(signed_in_at, ends_at, reason)
    withdrawn = _idp_withdrawn(session)
    if withdrawn is not None:
        slug, why = withdrawn
        return {**_ended_detail(signed_in_at, now, why), "idp": slug}
    return None


def session_end_if_over_http(*, request: HttpRequest) -> None:
    """Sign the request's person out when their session is past its end (a page or API call)."""
    over = _over(request.session)
    if over is None:
        return
    user = request.user if request.user.is_authenticated else None
    logout(request)  # a new, empty session: the view answers as to anyone not signed in
    if user is not None:
        logbook_append(action="auth.signed_out", actor=user, detail=over)


def session_end_if_over_scope(*, session: SessionBase, user: Any) -> bool:
    """The same for a WebSocket handshake's session; True when it was ended. A stamp added at
    first sight is saved here (nothing saves a WebSocket's session otherwise)."""
    had_stamp = session.get(SIGNED_IN_AT_KEY) is not None
    over = _over(session)
    if over is None:
        if not had_stamp and session.get(SIGNED_IN_AT_KEY) is not None:
            session.save()
        return False
    signed_in = user if getattr(user, "is_authenticated", False) else None
    session.flush()
    if signed_in is not None:
        user_logged_out.send(sender=type(signed_in), request=None, user=signed_in)
        logbook_append(action="auth.signed_out", actor=signed_in, detail=over)
    return True


def sessions_expired_purge() -> None:
    """Delete every stored session past its expiry, through the session engine's own
    ``clear_expired`` (what ``manage.py clearsessions`` runs): hourly, by
    ``workers.tasks.purge_expired_sessions``. A browser still holding one is as signed out as before."""
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()


class SessionLifetimeMiddleware:
    """HTTP: after AuthenticationMiddleware, before any view (pages, and DRF's session auth)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session_end_if_over_http(request=request)
        return self.get_response(request)


class SessionLifetimeAsgiMiddleware:
    """WebSockets that the session authenticates: inside Channels' AuthMiddlewareStack, so the
    scope has its session and user. An ended session reaches the consumers as nobody."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        session = scope.get("session")
        if session is not None and await database_sync_to_async(session_end_if_over_scope)(
            session=session, user=scope.get("user")
        ):
            scope = {**scope, "user": AnonymousUser()}
        return await self.application(scope, receive, send)
