"""SAML endpoints, one set per identity provider: login, ACS (+ finish), SLS, metadata.

The ACS receives the IdP's cross-site POST, which carries no SameSite=Lax session cookie.
So it checks everything that needs no session (signature, audience, times, one use), parks
the result, and redirects to `finish`: a same-site GET where the session is present, the
response is matched to the sign-in this browser started, and the person is signed in.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import login, logout
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from accounts.address_limits import client_address_hit
from accounts.saml.assertion import PassportSamlAuth, assertion_acceptable_until, assertion_answers, session_end
from accounts.saml.config import (
    LIST_ATTRIBUTES,
    IdentityProvider,
    identity_provider,
    identity_provider_trust,
    request_data,
    saml_settings,
)
from accounts.saml.logout import logout_request_claim, logout_request_names_session
from accounts.saml.services import (
    SamlRefused,
    saml_assertion_claim,
    saml_handoff_take,
    saml_idp_sign_out_record,
    saml_person_sign_in,
    saml_refusal_record,
    saml_sign_in_record,
)
from accounts.session_lifetime import SAML_SIGN_IN_KEY, SAML_TRUST_KEY, session_idp_end_set
from audit.refusals import client_source

logger = logging.getLogger(__name__)

HANDOFF_COOKIE = "passport_saml_handoff"
PENDING_KEY = "saml_pending"  # session: AuthnRequest id -> {"idp", "next"}
SESSION_KEY = SAML_SIGN_IN_KEY  # session: how the person signed in, for single logout and its lifetime
LOGOUT_PENDING_KEY = "saml_logout_request"
_MAX_PENDING = 5
STARTS_SCOPE = "saml.login_start"  # accounts.address_limits: starts that store a new session
STARTS_REFUSED = "too_many_starts"


def _idp_or_404(slug: str) -> IdentityProvider:
    idp = identity_provider(slug)
    if idp is None:
        raise Http404("No such identity provider.")
    return idp


def _auth(request: HttpRequest, idp: IdentityProvider) -> PassportSamlAuth:
    return PassportSamlAuth(request_data(request), saml_settings(request, idp))


def _refused(
    request: HttpRequest, idp: IdentityProvider, refusal: SamlRefused, errors: list[str] | None = None
) -> HttpResponse:
    """A clear page with the reason, status 400/403, and a Logbook record; never the message's content."""
    saml_refusal_record(idp_slug=idp.slug, reason=refusal.reason, source=client_source(request), errors=errors)
    logger.warning("SAML refused from %s: %s", idp.slug, refusal.reason)
    return render(
        request,
        "saml/refused.html",
        {"idp": idp, "reason": refusal.reason, "message": refusal.message},
        status=refusal.status,
    )


def _bad(reason: str, message: str) -> SamlRefused:
    return SamlRefused(reason, message, status=400)


def _safe_next(request: HttpRequest, url: str | None) -> str:
    hosts = {request.get_host()}
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts=hosts, require_https=request.is_secure()):
        return url
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def _too_many_starts(request: HttpRequest, idp: IdentityProvider, wait: int) -> HttpResponse:
    """429 with Retry-After and a page saying how long to wait; the Logbook hears of it once per
    window and address, then as a count (``saml_refusal_record``). No session is written."""
    response = _refused(
        request,
        idp,
        SamlRefused(
            STARTS_REFUSED,
            f"Too many sign-ins were started from this address: wait {wait} seconds and try again.",
            status=429,
        ),
    )
    response["Retry-After"] = str(wait)
    return response


@require_GET
def saml_login(request: HttpRequest, slug: str) -> HttpResponse:
    """Send the browser to the IdP with an AuthnRequest, remembering its id in the session.

    Someone already signed in is sent on, and their session is not written: a write would move
    its cookie's expiry, and a new sign-in would be the way to a new session lifetime anyway.

    A browser with no session gets one here, a row in the database until it expires, so such
    starts are limited per client address (``PASSPORT_SAML_STARTS_PER_MINUTE``); a browser that
    starts over writes its own session again and is not counted.
    """
    idp = _idp_or_404(slug)
    if request.user.is_authenticated:
        return HttpResponseRedirect(_safe_next(request, request.GET.get("next")))
    pending: dict[str, Any] = request.session.get(PENDING_KEY, {})
    if request.session.session_key is None:  # no stored session (after loading it): this start makes one
        verdict = client_address_hit(request, scope=STARTS_SCOPE, limit_setting="PASSPORT_SAML_STARTS_PER_MINUTE")
        if not verdict.allowed:
            return _too_many_starts(request, idp, max(1, verdict.retry_after))
    auth = _auth(request, idp)
    url = auth.login(return_to="")
    pending[auth.get_last_request_id()] = {"idp": idp.slug, "next": request.GET.get("next", "")}
    request.session[PENDING_KEY] = dict(list(pending.items())[-_MAX_PENDING:])
    return HttpResponseRedirect(url)


def _mapped_attributes(idp: IdentityProvider, raw: dict[str, list[Any]]) -> dict[str, Any]:
    mapped: dict[str, Any] = {}
    for ours, names in idp.attributes.items():
        for name in names:
            values = raw.get(name)
            if values:
                mapped[ours] = [str(v) for v in values] if ours in LIST_ATTRIBUTES else str(values[0])
                break
    return mapped


@csrf_exempt  # the IdP's POST cannot carry our CSRF token; the signed response is the proof
@require_POST
def saml_acs(request: HttpRequest, slug: str) -> HttpResponse:
    idp = _idp_or_404(slug)
    if "SAMLResponse" not in request.POST:
        return _refused(request, idp, _bad("no_response", "No SAML response was posted."))
    auth = _auth(request, idp)
    try:
        auth.process_response(request_id=None)
    except Exception as exc:  # malformed base64 or XML: python3-saml raises many kinds
        return _refused(request, idp, _bad("malformed", "The SAML response could not be read."), [type(exc).__name__])
    errors = auth.get_errors()
    if errors or not auth.is_authenticated():
        # python3-saml's reason quotes the response (its StatusMessage, Issuer, Destination) before
        # any signature is checked, and anyone can post here: it goes to the Logbook, never the page.
        reason = auth.get_last_error_reason() or "not authenticated"
        return _refused(
            request,
            idp,
            SamlRefused(
                "invalid_response",
                "The SAML response was refused: it is not a valid, signed answer from this identity provider. "
                "The details are in the Logbook.",
            ),
            [*errors, reason],
        )
    try:
        acceptable_until = assertion_acceptable_until(auth)
        in_response_to = assertion_answers(auth)
    except SamlRefused as refusal:
        return _refused(request, idp, refusal)
    ends_at = session_end(auth)
    payload = {
        "name_id": auth.get_nameid(),
        "name_id_format": auth.get_nameid_format(),
        "nq": auth.get_nameid_nq(),
        "spnq": auth.get_nameid_spnq(),
        "session_index": auth.get_session_index(),
        # The signed assertion's word, not the envelope's (accounts.saml.assertion).
        "in_response_to": in_response_to,
        "attributes": _mapped_attributes(idp, auth.get_attributes()),
        "session_not_on_or_after": ends_at.isoformat() if ends_at else None,
        # The IdP as it checked this assertion's signature: a certificate changed before the finishing
        # step ends the session it makes (accounts.session_lifetime).
        "trust": identity_provider_trust(idp),
    }
    try:
        token = saml_assertion_claim(
            idp=idp,
            assertion_id=auth.get_last_assertion_id(),
            acceptable_until=acceptable_until,
            payload=payload,
        )
    except SamlRefused as refusal:
        return _refused(request, idp, refusal)
    response = HttpResponseRedirect(reverse("saml_finish", args=[idp.slug]))
    response.set_cookie(
        HANDOFF_COOKIE,
        token,
        max_age=300,
        path=reverse("saml_finish", args=[idp.slug]),
        secure=request.is_secure(),
        httponly=True,
        samesite="Lax",
    )
    return response


@require_GET
def saml_finish(request: HttpRequest, slug: str) -> HttpResponse:
    idp = _idp_or_404(slug)
    try:
        payload = saml_handoff_take(idp=idp, token=request.COOKIES.get(HANDOFF_COOKIE, ""))
        pending: dict[str, Any] = request.session.get(PENDING_KEY, {})
        in_response_to = payload.get("in_response_to") or ""
        started = pending.pop(in_response_to, None) if in_response_to else None
        if in_response_to and (started is None or started.get("idp") != idp.slug):
            raise SamlRefused("unknown_request", "This response answers a sign-in this browser did not start.")
        if not in_response_to and not idp.allow_idp_initiated:
            raise SamlRefused("unsolicited", f"{idp.name} sent a sign-in Passport did not ask for.")
        user = saml_person_sign_in(
            idp=idp,
            name_id=payload["name_id"],
            name_id_format=payload.get("name_id_format") or "",
            attributes=payload.get("attributes", {}),
        )
    except SamlRefused as refusal:
        response = _refused(request, idp, refusal)
        response.delete_cookie(HANDOFF_COOKIE, path=reverse("saml_finish", args=[idp.slug]))
        return response
    login(request, user, backend="accounts.auth_backends.LocalModelBackend")
    saml_sign_in_record(user=user, idp_slug=idp.slug)
    ends_at = payload.get("session_not_on_or_after")
    session_idp_end_set(session=request.session, ends_at=datetime.fromisoformat(ends_at) if ends_at else None)
    request.session[PENDING_KEY] = pending
    request.session[SESSION_KEY] = {
        "idp": idp.slug,
        "name_id": payload["name_id"],
        "name_id_format": payload.get("name_id_format"),
        "nq": payload.get("nq"),
        "spnq": payload.get("spnq"),
        "session_index": payload.get("session_index"),
        SAML_TRUST_KEY: payload.get("trust"),
    }
    response = HttpResponseRedirect(_safe_next(request, (started or {}).get("next")))
    response.delete_cookie(HANDOFF_COOKIE, path=reverse("saml_finish", args=[idp.slug]))
    return response


def sp_logout_url(request: HttpRequest) -> tuple[str, str] | None:
    """The IdP URL carrying our LogoutRequest for this session, and its id; None if not SAML."""
    info = request.session.get(SESSION_KEY)
    if not info:
        return None
    idp = identity_provider(info.get("idp", ""))
    if idp is None:
        return None
    auth = _auth(request, idp)
    if not auth.get_slo_url():
        return None
    url = auth.logout(
        return_to="",
        name_id=info.get("name_id"),
        session_index=info.get("session_index"),
        nq=info.get("nq"),
        name_id_format=info.get("name_id_format"),
        spnq=info.get("spnq"),
    )
    return url, f"{idp.slug}:{auth.get_last_request_id()}"


@require_GET
def saml_sls(request: HttpRequest, slug: str) -> HttpResponse:
    """Single logout: the IdP's LogoutRequest signs the person out; its LogoutResponse ends ours."""
    idp = _idp_or_404(slug)
    auth = _auth(request, idp)
    if "SAMLRequest" in request.GET:
        if "Signature" not in request.GET:
            return _refused(request, idp, _bad("unsigned_logout", "The logout request is not signed."))
        try:
            redirect_to = auth.process_slo(keep_local_session=True)
        except Exception as exc:
            return _refused(
                request, idp, _bad("malformed", "The logout request could not be read."), [type(exc).__name__]
            )
        if auth.get_errors():
            errors = [*auth.get_errors(), auth.get_last_error_reason() or ""]
            return _refused(request, idp, _bad("invalid_logout", "The logout request was refused."), errors)
        xml = auth.get_last_request_xml()
        try:
            logout_request_claim(idp=idp, xml=xml)
        except SamlRefused as refusal:
            return _refused(request, idp, refusal)
        info = request.session.get(SESSION_KEY) or {}
        asked_for = OneLogin_Saml2_Logout_Request.get_nameid(xml)
        if request.user.is_authenticated and info.get("idp") == idp.slug and info.get("name_id") == asked_for:
            if not logout_request_names_session(xml=xml, sign_in=info):
                # Another of the person's sessions at the IdP: answered, this one is left alone.
                saml_refusal_record(idp_slug=idp.slug, reason="other_session", source=client_source(request))
                return HttpResponseRedirect(redirect_to)
            user = request.user
            logout(request)
            saml_idp_sign_out_record(user=user, idp_slug=idp.slug)
        return HttpResponseRedirect(redirect_to)
    if "SAMLResponse" in request.GET:
        expected = request.session.pop(LOGOUT_PENDING_KEY, "")
        prefix, _, request_id = expected.partition(":")
        if prefix != idp.slug:
            return _refused(request, idp, _bad("unknown_logout", "This logout response answers nothing we sent."))
        try:
            auth.process_slo(keep_local_session=True, request_id=request_id)
        except Exception as exc:
            return _refused(
                request, idp, _bad("malformed", "The logout response could not be read."), [type(exc).__name__]
            )
        if auth.get_errors():
            errors = [*auth.get_errors(), auth.get_last_error_reason() or ""]
            return _refused(request, idp, _bad("invalid_logout", "The logout response was refused."), errors)
        return HttpResponseRedirect(resolve_url(settings.ACCOUNT_LOGOUT_REDIRECT_URL))
    return _refused(request, idp, _bad("no_message", "No SAML logout message was sent."))


@require_GET
def saml_metadata(request: HttpRequest, slug: str) -> HttpResponse:
    """Our SP metadata for one IdP: entity id, ACS and SLS, to register at that IdP."""
    idp = _idp_or_404(slug)
    sp_settings = OneLogin_Saml2_Settings(settings=saml_settings(request, idp), sp_validation_only=True)
    metadata = sp_settings.get_sp_metadata()
    errors = sp_settings.validate_metadata(metadata)
    if errors:
        logger.error("SP metadata for %s is invalid: %s", idp.slug, errors)
        message = "The service provider metadata is invalid; see the log."
        return HttpResponse(message, status=500, content_type="text/plain")
    return HttpResponse(metadata, content_type="application/samlmetadata+xml")
