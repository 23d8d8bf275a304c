"""GET pages with a side effect are not taken on another site's word.

The session cookie is SameSite=Lax (so links from mail and chat sign in), which means a page of any
other site can navigate a signed-in person's tab to a portal URL with their cookie. Most GET pages
only read; a few do something in the person's name: open a shell (the terminal page), start
watching a session (which counts as a moderator's join), write a Logbook entry (a recording viewed
or searched, a Logbook export). Those take ``cross_site_confirmed``: a navigation the browser says
came from another site (``Sec-Fetch-Site: cross-site`` or ``same-site``, a sibling host this portal
does not control) does nothing but show a page naming what was asked, with a same-origin
"Continue" link; the person's own click on it does the thing. A page whose own form asks for the
thing (the CLI's code page, where a ``?code=`` link is looked up as the person, an attempt on their
count: accounts.cli_views) asks ``from_another_site`` itself and only fills the form in. A typed
URL or a bookmark (``none``), the portal's own links (``same-origin``) and a client that sends no
such header are let through: the header is how browsers say where a navigation came from, and one
that does not send it cannot be told apart.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import render

View = Callable[..., HttpResponseBase]

# What Sec-Fetch-Site says of a request another site started (a sibling subdomain included).
FOREIGN = frozenset({"cross-site", "same-site"})


def from_another_site(request: HttpRequest) -> bool:
    return request.headers.get("Sec-Fetch-Site", "").strip().lower() in FOREIGN


def cross_site_confirmed(what: str) -> Callable[[View], View]:
    """A GET view whose side effect needs the person's own click when another site sent them.

    ``what`` completes "Another site sent you here to …" on the page shown instead.
    """

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
            if request.method in ("GET", "HEAD") and from_another_site(request):
                context = {"what": what, "continue_url": request.get_full_path()}
                response = render(request, "cross_site.html", context, status=200)
                response["X-Robots-Tag"] = "noindex"
                return response
            return view(request, *args, **kwargs)

        return guarded

    return decorate
