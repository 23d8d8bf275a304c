"""Short refusals for htmx requests.

htmx swaps no 4xx/5xx answer into the page, so a refused click or poll would show nothing;
static/js/passport.js shows the person the text of an answer marked with ``MESSAGE_HEADER``
(plain text, a sentence or two, written by the portal for that), and a generic line for any
other failure. The text is shown as text, never as markup.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

# The portal wrote this answer's body for a person to read beside the element that asked.
MESSAGE_HEADER = "X-Passport-Message"


def is_htmx(request: HttpRequest) -> bool:
    # A history restore asks for a whole page: it is answered as a plain request.
    return request.headers.get("HX-Request") == "true" and not request.headers.get("HX-History-Restore-Request")


def htmx_refusal(message: str, *, status: int) -> HttpResponse:
    """A refusal htmx shows as ``message`` near the element that asked (static/js/passport.js)."""
    response = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    response[MESSAGE_HEADER] = "1"
    return response
