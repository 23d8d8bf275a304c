"""The terminal page: xterm.js for one grant, or a page that says why it cannot open."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from terminal import selectors, services


@never_cache
@login_required
def terminal_page(request: HttpRequest, grant_id: int) -> HttpResponse:
    user = request.user
    assert user.is_authenticated
    grant = selectors.grant_for_terminal(user=user, grant_id=grant_id)
    context = {"grant": grant, "req": grant.request, "instance": grant.instance}
    reason = services.terminal_unavailable_reason(grant=grant, user=user)
    if reason:
        return render(request, "terminal/unavailable.html", {**context, "reason": reason}, status=409)
    ticket = services.ticket_issue(user=user, grant=grant)
    return render(request, "terminal/terminal.html", {**context, "ticket": ticket})
