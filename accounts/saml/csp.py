"""Where a SAML sign-out leaves the portal, for the Content-Security-Policy's form-action.

Signing out posts the page's form to Passport, which answers with a redirect to the IdP's
single-logout URL (our LogoutRequest). Chromium holds every redirect after a form post to
the posting page's ``form-action``, so for a person signed in by SAML that IdP's origin is
added to the policy of each page they get; nobody else's pages may post anywhere but here.
(An IdP known by its metadata has had it read at sign-in; nothing is fetched for a page.)
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpRequest

from accounts.saml.config import identity_provider, known_logout_url
from accounts.saml.views import SESSION_KEY


def sign_out_origin(request: HttpRequest) -> str | None:
    """The origin of the single-logout URL of the IdP this session came from; None if there is none."""
    session = getattr(request, "session", None)
    info = session.get(SESSION_KEY) if session is not None else None
    if not isinstance(info, dict):
        return None
    idp = identity_provider(str(info.get("idp", "")))
    if idp is None:
        return None
    parts = urlsplit(known_logout_url(idp))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"
