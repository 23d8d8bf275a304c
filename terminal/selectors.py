"""Reading grants for the terminal: only what the person may see, else a 404."""

from __future__ import annotations

from django.http import Http404

from accounts.models import User
from requests_app.models import Grant
from requests_app.selectors import access_request_get


def grant_for_terminal(*, user: User, grant_id: int) -> Grant:
    """The grant if this person may see its request; a 404 otherwise (never a hint it exists)."""
    request_id = Grant.objects.filter(pk=grant_id).values_list("request_id", flat=True).first()
    if request_id is None:
        raise Http404("No such grant.")
    access_request = access_request_get(user=user, pk=request_id)
    grant = Grant.objects.select_related("instance", "request__account", "request__requester").get(pk=grant_id)
    grant.request = access_request
    return grant
