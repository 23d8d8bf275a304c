"""Which CLI sign-in an HTTP request came with, so every Logbook entry it causes says so.

The CLI's bearer token (``accounts.authentication.BearerTokenAuthentication``) acts as its person
in the API; without this an approval or a completion made with it would read in the Logbook like
one made in the browser. The authentication marks the request (``logbook_cli_token_set``, the
token's id, never its secret) and ``logbook_append`` adds ``cli_token`` to the detail of each entry
written while the mark holds.

The CLI's recording SSH proxy marks its connections the same way (``logbook_cli_token_as``, in
``terminal.proxy.auth``): every entry a connection writes, its session's and its refusals', names the
token that opened it.

The mark lives in a context variable, so it holds for the code that runs on the request's behalf
and no further; ``LogbookOriginMiddleware`` opens a clean one for each request and ends it when the
request ends, so a thread that serves the next request never carries the last one's token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

# The detail key an entry written with a CLI token carries: the token's id (accounts.ApiToken);
# a key name, not a secret.
CLI_TOKEN_KEY = "cli_token"  # noqa: S105  # nosec B105

_cli_token: ContextVar[int | None] = ContextVar("passport_logbook_cli_token", default=None)


def logbook_cli_token_set(token_id: int) -> None:
    """Mark the current request as authenticated by the CLI token ``token_id``."""
    _cli_token.set(int(token_id))


@contextmanager
def logbook_cli_token_as(token_id: int | None) -> Iterator[None]:
    """Mark what runs inside, and the tasks and sync calls it starts, as done with the CLI token
    ``token_id`` (None: with none); the mark is as before once it ends. For work that is not one HTTP
    request: a CLI proxy connection (terminal.proxy.auth), a task shared by several of them."""
    mark = _cli_token.set(None if token_id is None else int(token_id))
    try:
        yield
    finally:
        _cli_token.reset(mark)


def logbook_cli_token() -> int | None:
    """The id of the CLI token the current request came with, or None (a browser session, a worker)."""
    return _cli_token.get()


class LogbookOriginMiddleware:
    """Each request starts with no CLI token marked and leaves none behind."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with logbook_cli_token_as(None):
            return self.get_response(request)
