"""allauth's pages Passport keeps from people: the set-password page from those who sign in
through an identity provider, the email page from everyone."""

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


@login_required
def email_set_by_others(request: HttpRequest) -> HttpResponse:
    """allauth's page for adding and changing one's email addresses, kept from everyone: the
    address says which accounts are one person (``permissions.same_person``), so a person who
    could change it could approve their own request from another account."""
    messages.error(
        request, "Your email address is set by a site admin or by your identity provider; ask them to change it."
    )
    return HttpResponseRedirect(reverse("requests:list"))
