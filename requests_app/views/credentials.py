"""A grant's credentials shown on the request page: a Windows password revealed on demand."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.page_limits import person_write_limited
from accounts.typing import AuthenticatedRequest
from core.errors import RequestRuleError
from core.htmx import htmx_refusal
from requests_app import selectors, services


@never_cache
@login_required
@require_POST
@person_write_limited
def grant_password(request: AuthenticatedRequest, pk: int, grant_pk: int) -> HttpResponse:
    """Reveal a Windows password on demand (htmx swaps it into the grant's row); each reveal is logged."""
    access_request = selectors.access_request_get(user=request.user, pk=pk)
    grant = get_object_or_404(access_request.grants.select_related("instance", "request"), pk=grant_pk)
    try:
        password = services.grant_reveal_password(grant=grant, user=request.user)
    except RequestRuleError as error:
        # One line, shown beside the button (static/js/passport.js): htmx swaps no refusal in.
        return htmx_refusal(str(error), status=403 if error.code == "forbidden" else 409)
    return render(request, "requests/_password.html", {"password": password, "grant": grant})
