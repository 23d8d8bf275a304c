"""The portal's sign-out, ``/accounts/logout/`` and the admin's ``/admin/logout/``: allauth's view,
except that a session signed in through SAML always goes on to its IdP's single logout.

allauth sends the browser to a safe ``next`` when there is one, and asks the adapter for the
sign-out's destination only when there is none; the adapter is where the IdP's LogoutRequest is
made and the pending sign-out remembered (``accounts.adapters``). So a link such as
``/accounts/logout/?next=/`` would end the portal's session and leave the person signed in at
their IdP. Here a SAML session's ``next`` is not followed, nor carried into the confirmation
page's form: the IdP's answer lands on the sign-in page, as every SAML sign-out does
(``accounts.saml.views.saml_sls``). A local session still follows a ``next`` that stays on the
portal.
"""

from __future__ import annotations

from typing import Any

from allauth.account.views import LogoutView

from accounts.session_lifetime import session_idp_slug


class SignOutView(LogoutView):
    def _through_an_idp(self) -> bool:
        return session_idp_slug(self.request.session) is not None

    def get_next_url(self) -> str | None:
        if self._through_an_idp():
            return None
        next_url: str | None = super().get_next_url()
        return next_url

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_context_data(**kwargs)
        if self._through_an_idp():
            context.update(redirect_field_value=None, redirect_field="")
        return context


sign_out = SignOutView.as_view()
