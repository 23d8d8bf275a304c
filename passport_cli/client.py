"""A small client for the portal's REST API: bearer token, JSON, errors mapped to exit codes."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests

from passport_cli import __version__
from passport_cli.config import Credentials, load_credentials
from passport_cli.display import PORTAL_TEXT_LIMIT, printable
from passport_cli.errors import CliError, Exit
from passport_cli.output import progress

TIMEOUT = 30
# How many pages of a list the CLI reads (at 50 a page, 50,000 requests): a list that goes on past it is
# a portal that does not end it.
MAX_PAGES = 1000
USER_AGENT = f"passport-cli/{__version__}"
# How much of an answer the CLI cannot read its message quotes: enough to tell a proxy's page.
UNREADABLE_QUOTE_LIMIT = 80

T = TypeVar("T")


# What a URL parser may read as the at-sign that ends user info: "@", and the two characters that NFKC
# normalisation (IDNA, urllib's netloc check) turns into one.
_AT_SIGNS = ("@", "\ufe6b", "\uff20")
# The start of a portal URL that is no secret: its scheme, in any case, and the separators after it.
_SCHEME_START = re.compile(r"https?:[/\\]*", re.IGNORECASE)


def portal_without_userinfo(url: str) -> str:
    """``url`` with its user info (``user:password@``) left out, whatever its form: everything between its
    scheme (when it is http or https) and its last at-sign goes. A password may hold a "/" or be written
    with no scheme at all, so the at-sign is looked for anywhere; a URL without one is returned as is."""
    last = max(url.rfind(sign) for sign in _AT_SIGNS)
    if last < 0:
        return url
    scheme = _SCHEME_START.match(url)
    return f"{scheme.group() if scheme else ''}[redacted]@{url[last + 1 :]}"


def portal_shown(url: str) -> str:
    """A portal URL as a message may quote it: without its user info, every control character escaped."""
    return printable(portal_without_userinfo(url))


def resolve_portal(explicit: str | None, credentials: Credentials | None = None) -> str:
    """The portal's base URL: ``--portal``, else PASSPORT_URL, else the stored sign-in's; its scheme in
    lower case. A usage error names what is wrong, and quotes the URL only escaped and never with user
    info: the message reaches a terminal, and the report for support (`passport diagnostics`)."""
    url = explicit or os.environ.get("PASSPORT_URL") or (credentials.portal if credentials else "")
    if not url:
        raise CliError("Which portal? Pass --portal URL or set PASSPORT_URL.", Exit.USAGE)
    if portal_without_userinfo(url) != url:
        # It would be printed in messages and reports; the CLI signs in with `passport auth login`.
        raise CliError("The portal URL must not hold a user name or password (user:password@).", Exit.USAGE)
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in ("http", "https"):
        raise CliError(f"The portal URL must start with http:// or https://, not '{printable(url)}'.", Exit.USAGE)
    url = f"{scheme.lower()}://{rest}"
    if not url.isprintable():
        raise CliError(f"The portal URL must not hold control or invisible characters: '{printable(url)}'.", Exit.USAGE)
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # a port that is not a number raises too
    except ValueError as error:
        raise CliError(f"The portal URL cannot be read: '{printable(url)}'.", Exit.USAGE) from error
    if not host:
        raise CliError(f"The portal URL names no host: '{printable(url)}'.", Exit.USAGE)
    return url.rstrip("/")


# The hosts a plain http:// URL reaches without leaving this machine.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def cleartext_elsewhere(base: str) -> bool:
    """Whether ``base`` (as ``resolve_portal`` gives it) is plain http:// to another host than this machine:
    what goes there (a device code, a bearer token, a wheel) crosses the network readable and alterable.
    `auth login` and `version --self-update` refuse such a portal by this one rule."""
    parts = urlsplit(base)
    return parts.scheme != "https" and parts.hostname not in LOOPBACK_HOSTS


def _message(body: Any) -> str:
    """DRF's error bodies: {"detail": ...} or {"field": ["message", ...], ...}."""
    if isinstance(body, dict):
        if "error_description" in body:
            return str(body["error_description"])
        if "detail" in body and len(body) == 1:
            return str(body["detail"])
        parts = []
        for field, messages in body.items():
            text = " ".join(str(m) for m in messages) if isinstance(messages, list) else str(messages)
            parts.append(text if field in ("detail", "non_field_errors") else f"{field}: {text}")
        return "; ".join(parts)
    if isinstance(body, list):
        return " ".join(str(item) for item in body)
    return str(body)


def _error_name(body: Any) -> str:
    """An OAuth-style error name (``{"error": "slow_down", ...}``), or ""."""
    name = body.get("error") if isinstance(body, dict) else None
    return name if isinstance(name, str) and re.fullmatch(r"[a-z_]{1,40}", name) else ""


# Retry-After as delta-seconds (RFC 9110 section 10.2.3): ASCII digits only (str.isdigit() also takes "²",
# which int() cannot read), and few enough for int() (which refuses over 4,300) and any real wait.
_RETRY_AFTER_RE = re.compile(r"[0-9]{1,10}")


def _retry_after(response: requests.Response) -> int | None:
    """Retry-After in seconds (an HTTP date is not worth parsing here), at most an hour; None for anything else."""
    value = response.headers.get("Retry-After", "").strip()
    return min(int(value), 3600) if _RETRY_AFTER_RE.fullmatch(value) else None


def unreachable_reason(error: BaseException) -> str:
    """A few words for why a request did not reach the portal, instead of urllib3's nested repr.

    requests wraps urllib3's error, which wraps the socket's: the innermost cause names the reason.
    """
    if isinstance(error, requests.Timeout):
        return f"no answer within {TIMEOUT} s"
    if isinstance(error, requests.exceptions.SSLError):
        return "the TLS handshake failed (certificate or protocol)"
    causes: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and len(causes) < 10:
        causes.append(seen)
        seen = seen.__cause__ or seen.__context__ or _urllib3_reason(seen)
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "the host name could not be resolved"
        if isinstance(cause, ConnectionResetError):
            return "the connection was reset"
        if isinstance(cause, OSError) and cause.strerror:
            return printable(cause.strerror.lower())
    if isinstance(error, requests.ConnectionError):
        return "the connection failed"
    return printable(type(error).__name__)


def _urllib3_reason(error: BaseException) -> BaseException | None:
    """urllib3's MaxRetryError keeps its cause in ``reason``; requests keeps urllib3's in ``args``."""
    reason = getattr(error, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    first = error.args[0] if error.args else None
    return first if isinstance(first, BaseException) else None


# The portal lists session authentication first, so DRF answers a bad bearer token with 403,
# not 401: these are the messages of an authentication failure (accounts.authentication, DRF).
_AUTH_FAILURE_HINTS = ("passport auth login", "authentication credentials were not provided", "bearer")


def _is_auth_failure(message: str) -> bool:
    lowered = message.lower()
    return any(hint in lowered for hint in _AUTH_FAILURE_HINTS)


class Answer(dict[str, Any]):
    """A JSON object the portal answered, with where it came from (``where``: the portal and the path),
    for ``field`` and ``objects`` to name when a field the CLI needs is missing or of another type."""

    def __init__(self, body: Mapping[str, Any], where: str) -> None:
        super().__init__(body)
        self.where = where


def unreadable(where: str, what: str) -> CliError:
    """The error of an answer the CLI cannot read: a web page or JSON of another shape, where a URL that is
    not the portal's (a typo, a proxy's or a Wi-Fi sign-in page) answered 200. ``what`` is printed escaped."""
    at = f" at {where}" if where else ""
    return CliError(
        f"The portal{at} answered something this CLI cannot read ({printable(what)}). "
        "Is that the portal's URL? A proxy or a network sign-in page may have answered instead."
    )


# The JSON types, as the messages of ``unreadable`` name them.
_JSON_KINDS: dict[type, str] = {
    str: "text",
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    list: "a list",
    dict: "a JSON object",
}


def _kind(value: object) -> str:
    return "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)


def _what_came(body: Any) -> str:
    """A few words on an answer that is no JSON object: the start of its text (a page, or a JSON string:
    ``request`` gives both as text), or its JSON type."""
    if isinstance(body, str):
        return f"not a JSON object: '{printable(body, limit=UNREADABLE_QUOTE_LIMIT)}'"
    return f"{'null or nothing' if body is None else _kind(body)}, not a JSON object"


def field(answer: Mapping[str, Any], key: str, kind: type[T]) -> T:
    """``answer[key]``, a field the CLI needs, when it is a ``kind`` (an int is no bool); else the
    ``unreadable`` error naming the field. Every required field of a portal answer is read through it."""
    value = answer.get(key)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    found = "no" if value is None else f"{_kind(value)} as"
    raise unreadable(_origin(answer), f"{found} '{key}' where {_JSON_KINDS.get(kind, kind.__name__)} belongs")


def objects(answer: Mapping[str, Any], key: str) -> list[Answer]:
    """``answer[key]`` when it is a list of JSON objects (each an ``Answer`` from the same place); else
    the ``unreadable`` error naming the field."""
    where = _origin(answer)
    value = field(answer, key, list)
    if not all(isinstance(item, dict) for item in value):
        raise unreadable(where, f"'{key}' holds something other than JSON objects")
    return [Answer(item, where) for item in value]


def texts(answer: Mapping[str, Any], key: str) -> list[str]:
    """``answer[key]`` when it is a list of strings; else the ``unreadable`` error naming the field."""
    value = field(answer, key, list)
    if not all(isinstance(item, str) for item in value):
        raise unreadable(_origin(answer), f"'{key}' holds something other than text")
    return value


def _origin(answer: Mapping[str, Any]) -> str:
    """Where ``answer`` came from, for ``unreadable``; "" for a mapping that is no ``Answer``."""
    return answer.where if isinstance(answer, Answer) else ""


class Portal:
    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def signed_in(cls, portal: str | None) -> Portal:
        """The portal of the stored sign-in; exit 3 when there is none or it has expired."""
        credentials = load_credentials()
        if credentials is None:
            raise CliError("Not signed in: run `passport auth login`.", Exit.AUTH)
        if credentials.expired:
            expired_at = printable(credentials.expires_at)
            raise CliError(f"Your sign-in expired at {expired_at}: run `passport auth login`.", Exit.AUTH)
        base = resolve_portal(portal, credentials)
        if base != credentials.portal.rstrip("/"):
            raise CliError(
                f"You are signed in to {portal_shown(credentials.portal)}, not {printable(base)}: "
                f"run `passport auth login --portal {printable(base)}`.",
                Exit.AUTH,
            )
        if cleartext_elsewhere(base):
            # A sign-in stored before `auth login` refused such a portal, or a file written by hand: its
            # token would go to the network in clear with every command, which nobody chose.
            if not credentials.insecure_http:
                raise CliError(
                    f"Refusing to send your token over plain HTTP to {portal_shown(base)}: this sign-in was not "
                    "made with --insecure-http. Sign in again with the portal's https:// URL "
                    "(`passport auth login --portal https://...`), or with `passport auth login --insecure-http` "
                    "to send it in clear all the same.",
                    Exit.AUTH,
                )
            progress(f"sending the token over plain HTTP to {portal_shown(base)} (signed in with --insecure-http)")
        return cls(base, credentials.token)

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None) -> Any:
        try:
            response = self.session.request(method, self.url(path), json=json, params=params, timeout=TIMEOUT)
        except requests.RequestException as error:
            where, reason = portal_shown(self.base_url), unreachable_reason(error)
            raise CliError(f"cannot reach the portal at {where}: {reason}", Exit.UNREACHABLE) from error
        try:
            body: Any = response.json() if response.content else None
        except (ValueError, RecursionError):
            # Not JSON, or JSON nested deeper than the parser goes ("[[[[..."): an answer the CLI cannot read.
            body = response.text[:500]
        if response.status_code < 400:
            return body
        # The portal's words reach a terminal: a message may quote a reason or a Name back.
        message = printable(_message(body) if body else response.reason, limit=PORTAL_TEXT_LIMIT)
        if response.status_code == 401 or (response.status_code == 403 and _is_auth_failure(message)):
            raise CliError(f"Not signed in: {message}", Exit.AUTH)
        if response.status_code == 404:
            raise CliError(f"Not found: {message}", Exit.NOT_FOUND)
        portal_error, retry_after = _error_name(body), _retry_after(response)
        if response.status_code in (400, 403, 409):
            raise CliError(
                message, Exit.REFUSED, portal_error=portal_error, retry_after=retry_after, status=response.status_code
            )
        raise CliError(
            f"The portal answered {response.status_code}: {message}",
            Exit.ERROR,
            portal_error=portal_error,
            retry_after=retry_after,
            status=response.status_code,
        )

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json if json is not None else {})

    def get_object(self, path: str, params: dict[str, str] | None = None) -> Answer:
        """``get`` of an answer that must be a JSON object; anything else is the ``unreadable`` error."""
        return self._object(path, self.get(path, params))

    def post_object(self, path: str, json: Any = None) -> Answer:
        """``post`` of an answer that must be a JSON object; anything else is the ``unreadable`` error."""
        return self._object(path, self.post(path, json))

    def _place(self, path: str) -> str:
        """The portal and the path asked, as ``unreadable`` names them."""
        return f"{portal_shown(self.base_url)} ({printable(urlsplit(self.url(path)).path, limit=200)})"

    def _object(self, path: str, body: Any) -> Answer:
        place = self._place(path)
        if not isinstance(body, dict):
            raise unreadable(place, _what_came(body))
        return Answer(body, place)

    def get_all(self, path: str, params: dict[str, str] | None = None) -> list[Answer]:
        """Every item of a paginated list (DRF cursor pagination: follows ``next``), at most ``MAX_PAGES``
        pages. A ``next`` is followed only on the portal's host, each once: a CliError otherwise, so that
        a portal (or whatever answers for it) can neither keep the CLI walking for ever nor send it, and
        its bearer token, elsewhere."""
        items: list[Answer] = []
        seen: set[str] = set()
        page: Any = self.get(path, params)
        asked = path
        while True:
            # A page is a list of objects, or DRF's {"results": [...], "next": URL or null}.
            page = (
                Answer({"results": page}, self._place(asked)) if isinstance(page, list) else self._object(asked, page)
            )
            items.extend(objects(page, "results"))
            link = page.get("next")
            if link is not None and not isinstance(link, str):
                raise unreadable(page.where, "a 'next' page that is no URL")
            if not link:
                return items
            following = self._next_page(path, link)
            if following in seen:
                raise CliError(
                    f"The portal's list {printable(path)} links to a page it already gave: stopped there. "
                    "Tell the portal's operators."
                )
            if len(seen) + 1 >= MAX_PAGES:
                raise CliError(
                    f"The portal's list {printable(path)} goes on past {MAX_PAGES} pages: stopped there. "
                    "Ask for less (see the command's options), or tell the portal's operators."
                )
            seen.add(following)
            page, asked = self.get(following), following

    def _next_page(self, path: str, link: str) -> str:
        """The URL of ``link`` on the portal: its path and query, on the base URL's scheme and port (DRF builds
        ``next`` from the Host it was asked under; behind a TLS proxy its scheme or port may say otherwise).
        A link to another host, with user info, or of another scheme is a CliError."""
        target, base = urlsplit(link), urlsplit(self.base_url)
        relative = not target.scheme and not target.netloc and target.path.startswith("/")
        if printable(link) != link or not (
            relative
            or (target.scheme in ("http", "https") and "@" not in target.netloc and target.hostname == base.hostname)
        ):
            raise CliError(
                f"The portal's list {printable(path)} links to a next page elsewhere "
                f"({printable(link, limit=200)}): not following it."
            )
        return urlunsplit(base._replace(path=target.path, query=target.query, fragment=""))
