"""The CA page: the public keys hosts must trust, and how to trust them."""

from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.typing import AuthenticatedRequest
from core.usernames import grant_principal
from sshca.selectors import ca_key_list
from sshca.services import ca_authorized_keys_lines, ca_keys_ensure


@require_GET
@login_required
def ca_keys(request: AuthenticatedRequest) -> HttpResponse:
    ca_keys_ensure()  # created on first use, so the page always has keys to show
    keys = list(ca_key_list())
    context = {
        "nav": "ca",
        "keys": keys,
        "trusted": [key for key in keys if key.is_trusted],
        # An example grant principal (each grant's line names its own).
        "example_principal": grant_principal(uuid.UUID(int=0)),
        # Its lines, forwards limited to the ports every account opens (each account adds its own).
        "example_lines": ca_authorized_keys_lines(principal=grant_principal(uuid.UUID(int=0))),
        # The host CA (made on first use by the proxy or a certificate response): shown, never created here.
        "host_keys": [key for key in ca_key_list(purpose="host") if key.is_trusted],
    }
    return render(request, "sshca/keys.html", context)
