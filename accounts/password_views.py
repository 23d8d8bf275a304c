"""The set-password page, kept from people who sign in through an identity provider."""

from __future__ import annotations

from allauth.account.views import password_set
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from accounts.adapters import signs_in_through_an_idp


@login_required
def password_set_unless_idp(request: HttpRequest) -> HttpResponse:
    """allauth's page for a person without a password, unless they came by SAML: a local
    password would let them in after their IdP took their groups or their account away."""
    if signs_in_through_an_idp(request.user):
        messages.error(request, "You sign in through your identity provider: Passport keeps no password for you.")
        return HttpResponseRedirect(reverse("requests:list"))
    return password_set(request)
