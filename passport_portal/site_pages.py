"""Routes of the site itself rather than of an app: what a browser asks for on its own."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST, require_safe

from accounts.sign_out_views import sign_out


@require_safe
def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """``/favicon.ico``, which browsers fetch on their own (the admin's pages link no icon): the
    portal's SVG icon. Not a permanent redirect: the static file's name may change with its content."""
    response = HttpResponseRedirect(static("favicon.svg"))
    patch_cache_control(response, public=True, max_age=86400)
    return response


def admin_sign_in(request: HttpRequest) -> HttpResponseRedirect:
    """``/admin/login/``: the portal's own sign-in, never Django's admin form, which would take
    a password alone (no TOTP step, no failed-sign-in limits, no Logbook entry). Whatever is
    posted here is dropped; ``next`` is kept when it stays on this site."""
    target = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("admin:index")
    return HttpResponseRedirect(f"{reverse('account_login')}?{urlencode({'next': target})}")


def admin_password_change(request: HttpRequest) -> HttpResponseRedirect:
    """``/admin/password_change/``: the portal's own page, which asks for the current password
    through allauth and does what a password change does there (sessions, CLI sign-ins)."""
    return HttpResponseRedirect(reverse("account_change_password"))


# ``/admin/logout/``: the portal's own sign-out, never Django's admin view, which would end the
# session with no ``auth.signed_out`` entry and without telling a SAML person's IdP (single logout),
# and, like the portal's, one a ``next`` never takes past the IdP (accounts.sign_out_views).
# POST only, as the admin's and the portal's are (a GET of the portal's asks to confirm).
admin_sign_out = require_POST(sign_out)
