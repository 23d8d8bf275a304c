from allauth.account.adapter import DefaultAccountAdapter
from django.http import HttpRequest

from accounts.saml.views import LOGOUT_PENDING_KEY, sp_logout_url
from audit.services import logbook_append


class NoSignupAccountAdapter(DefaultAccountAdapter):
    """People come from an admin or the identity provider; nobody signs themselves up."""

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False

    def get_logout_redirect_url(self, request: HttpRequest) -> str:
        """After signing out someone who came by SAML, tell their IdP too (single logout).

        allauth asks for this URL before it ends the session, which still names the IdP.
        """
        if request.user.is_authenticated:
            slo = sp_logout_url(request)
            if slo is not None:
                url, pending = slo
                request.passport_saml_logout = pending  # type: ignore[attr-defined]
                return url
        return super().get_logout_redirect_url(request)

    def logout(self, request: HttpRequest) -> None:
        user = request.user if request.user.is_authenticated else None
        super().logout(request)
        if user is not None:
            logbook_append(action="auth.signed_out", actor=user, detail={"by": "person"})
        # The new, empty session remembers which LogoutRequest the IdP's answer must match.
        pending = getattr(request, "passport_saml_logout", None)
        if pending:
            request.session[LOGOUT_PENDING_KEY] = pending
