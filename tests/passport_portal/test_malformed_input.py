"""No route answers 500 to malformed input: every page and API endpoint the resolver knows.

Each route is found from the URL resolver (so a route added later is swept too), reached with
real ids first, then given malformed ids in its path and malformed values in each query (or
form) parameter it reads. Which parameters a view reads is observed, not listed: a small
test-only middleware records the names looked up in ``request.GET``/``request.POST``, and the
sweep keeps going until no new name turns up. The API's JSON bodies are swept the same way: the
names a view looks up in the parsed body are recorded, and each is given hostile JSON. Whatever
the input, the answer is a 4xx or a redirect (to sign in, or back to a form), never a 5xx.
"""

from __future__ import annotations

import base64
import copy
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest, HttpResponse, QueryDict
from django.test import Client
from rest_framework.request import Request

from accounts.models import User
from tests.conftest import World
from tests.passport_portal.routes import RealIds, Route, all_routes

pytestmark = [pytest.mark.django_db, pytest.mark.integration]  # devcloud stands in for AWS

# --- the inputs ------------------------------------------------------------------------
# A value is one or more strings: several make the parameter an array (?x=a&x=b).
MALFORMED_VALUES: list[tuple[str, ...]] = [
    ("abc",),
    ("99999999999999999999",),
    ("-1",),
    ("",),
    ("1.5",),
    ("1e999",),
    ("NaN",),
    (" 7 ",),
    ("ünïcødé-☃-😀",),
    ("\x00",),
    ("1\x00",),
    ("x" * 5000,),
    ("2026-13-45T25:61",),
    ("../../etc/passwd",),
    ("1", "abc"),
    ("abc", "1", "99999999999999999999"),
]
# Bytes that are not UTF-8, written into the query string as they come.
RAW_QUERY_VALUES = ["%FF%FE", "%C0%AF"]
MALFORMED_PATH_VALUES = [
    "abc",
    "99999999999999999999",
    "-1",
    "0",
    "ünï-😀",
    "\x00",
    "1\x00",
    "9" * 400,
    "x" * 3000,
    "1.5",
    "..",
    "%",
    " ",
]


def _cursor(**tokens: str) -> str:
    """A cursor as DRF's cursor pagination encodes one (base64 of a query string), holding anything."""
    return base64.b64encode(urlencode(tokens).encode()).decode()


# Values that only mean something to one parameter, tried where a view reads it: cursors the API
# never handed out, well encoded, with a position its ordering field cannot read; times.
MALFORMED_BY_NAME: dict[str, list[str]] = {
    "cursor": [
        _cursor(o="0", p="not-a-time"),
        _cursor(o="0", p="\x00"),
        _cursor(o="0", p="x" * 5000),
        _cursor(o="9" * 40, p="2026-01-01T00:00:00+00:00"),
        _cursor(o="-1"),
        _cursor(r="1", p="2026-13-45T25:61"),
    ],
    # Times Python reads that the database cannot take: an offset past PostgreSQL's ±15:59, a
    # calendar edge that UTC moves out of years 1 to 9999.
    **{
        name: [
            "2026-06-01T12:00:00+20:00",
            "2026-06-01T12:00:00-23:59",
            "9999-12-31T23:59:00-05:00",
            "0001-01-01T00:00:00+05:00",
        ]
        for name in ("since", "until")
    },
}
# Raw JSON for each name a view reads in a JSON body: text that is no Unicode (lone surrogates),
# NUL, numbers past any column or past Python's int parsing, and the wrong shapes.
HOSTILE_JSON_VALUES = [
    '"\\ud800"',
    '"x\\udfff"',
    '"\\u0000"',
    "1e999",
    "-1e999",
    "9" * 40,
    "1" * 5000,
    '"' + "x" * 100_000 + '"',
    "[]",
    "{}",
    "null",
    "true",
    '[["\\ud800"]]',
]
# Said on purpose when AWS refuses (here: devcloud has no such instance), not a crash.
UPSTREAM_FAILED = {502, 503, 504}
# Names no view may choke on even if it does not read them today.
ALWAYS_TRIED = ("page", "cursor", "format", "next", "q", "account", "status", "ordering")

# --- which parameters a view reads -----------------------------------------------------
_names_read: set[tuple[str, str]] = set()


class _RecordingQueryDict(QueryDict):
    """A QueryDict that notes each name looked up in it (``where`` is GET or POST)."""

    where = "GET"

    def _note(self, key: object) -> None:
        if isinstance(key, str):
            _names_read.add((self.where, key))

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def getlist(self, key: str, default: Any = None) -> list[Any]:
        self._note(key)
        return super().getlist(key, default)


class _RecordingPostDict(_RecordingQueryDict):
    where = "POST"


class _RecordingBody(dict):
    """A parsed JSON object that notes each name looked up in it (as ``JSON``)."""

    def get(self, key: Any, default: Any = None) -> Any:
        _names_read.add(("JSON", key))
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        _names_read.add(("JSON", key))
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        _names_read.add(("JSON", key))
        return super().__contains__(key)


def _recording(source: QueryDict, kind: type[_RecordingQueryDict]) -> QueryDict:
    recorder = kind(mutable=True, encoding=source.encoding)
    for key, values in source.lists():
        recorder.setlist(key, values)
    recorder._mutable = False
    return recorder


class RecordParametersMiddleware:
    """Test-only: swaps in recording copies of the request's GET and POST."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.GET = _recording(request.GET, _RecordingQueryDict)
        if request.method == "POST" and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            request._post = _recording(request.POST, _RecordingPostDict)  # type: ignore[attr-defined]
        return self.get_response(request)


def _recording_parse(parse: Callable[[Request], tuple[Any, Any]]) -> Callable[[Request], tuple[Any, Any]]:
    """DRF's parse of a request body (the project's parsers run as they are), a JSON object recorded."""

    def recording(request: Request) -> tuple[Any, Any]:
        data, files = parse(request)
        return (_RecordingBody(data) if type(data) is dict else data), files

    return recording


# --- the sweep ----------------------------------------------------------------------------
@dataclass
class Sweep:
    client: Client
    ids: RealIds
    failures: list[str] = field(default_factory=list)
    probes: int = 0
    reached: dict[str, int] = field(default_factory=dict)  # route -> status with real ids, no parameters
    json_read: dict[str, list[str]] = field(default_factory=dict)  # route -> names read in a JSON body


@pytest.fixture
def recording_middleware(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.MIDDLEWARE = [
        "tests.passport_portal.test_malformed_input.RecordParametersMiddleware",
        *settings.MIDDLEWARE,
    ]
    monkeypatch.setattr(Request, "_parse", _recording_parse(Request._parse))


# --- probing -----------------------------------------------------------------------------
def _query(items: Sequence[tuple[str, str]], raw: Sequence[str]) -> str:
    return "&".join(filter(None, [urlencode(list(items)), *raw]))


DEEP_JSON = "[" * 5000 + "]" * 5000


def _probe(
    sweep: Sweep,
    route: Route,
    method: str,
    path: str,
    items: Sequence[tuple[str, str]] = (),
    raw: Sequence[str] = (),
    headers: dict[str, str] | None = None,
    json_body: str | None = None,
) -> int:
    """One request, rolled back afterwards so the next starts from the same data; ``json_body``
    is POSTed as application/json instead of the form.

    A 5xx or an exception is noted as a failure; the status is returned.
    """
    sweep.probes += 1
    cache.clear()  # throttles and rate limits would otherwise answer 429 before the view runs
    query = _query(items, raw)
    cookies = copy.deepcopy(sweep.client.cookies)  # a sign-out among the probes must not end the sweep's session
    status = 0
    try:
        with transaction.atomic():
            if json_body is not None:
                response = sweep.client.post(path, json_body, content_type="application/json", headers=headers)
            elif method == "GET":
                response = sweep.client.get(f"{path}?{query}" if query else path, headers=headers)
            else:
                response = sweep.client.post(
                    path, query, content_type="application/x-www-form-urlencoded", headers=headers
                )
            status = response.status_code
            transaction.set_rollback(True)
    except Exception as error:
        where = traceback.extract_tb(error.__traceback__)[-1]
        sweep.failures.append(
            f"{route} {method} {path[:120]!r} {query[:120]!r}: {type(error).__name__}: {str(error)[:200]} "
            f"({where.filename}:{where.lineno})"
        )
        return 500
    finally:
        sweep.client.cookies = cookies
    if status >= 500 and status not in UPSTREAM_FAILED:
        sweep.failures.append(f"{route} {method} {path[:120]!r} {query[:120]!r}: {status}")
    return status


def _real_arguments(sweep: Sweep, route: Route) -> tuple[dict[str, str], str]:
    """Real ids that reach the view, and the method the route answers.

    The first that gets a 2xx wins; failing that the first that is not a 404 (a redirect, a 403).
    """
    found: list[tuple[int, dict[str, str], str]] = []
    for values in sweep.ids.candidates(route):
        path = route.path(values)
        status = _probe(sweep, route, "GET", path)
        method = "GET"
        if status == 405:
            method = "POST"
            status = _probe(sweep, route, "POST", path)
        found.append((status, values, method))
        if status < 300:
            break
    status, values, method = min(found, key=lambda item: (item[0] >= 300, item[0] == 404))
    sweep.reached[route.name] = status
    return values, method


def _sweep_route(sweep: Sweep, route: Route) -> None:
    values, method = _real_arguments(sweep, route)
    path = route.path(values)

    # Malformed ids, one argument at a time.
    for argument in route.arguments:
        for bad in MALFORMED_PATH_VALUES:
            bad_path = route.path({**values, argument: bad})
            if _probe(sweep, route, "GET", bad_path) == 405:
                _probe(sweep, route, "POST", bad_path)

    # A body no parser may choke on: JSON nested far past Python's recursion limit (a few kB).
    _probe(sweep, route, "POST", path, json_body=DEEP_JSON)
    _probe(sweep, route, "POST", path, json_body=DEEP_JSON.replace("[", '{"a":').replace("]", "}"))
    _sweep_json_body(sweep, route, path)

    # Malformed parameters: all at once (the usual names too), then each name the view reads alone, the
    # others holding values it accepts, so that one refused parameter cannot hide another. The names
    # come from watching the view.
    where = "GET" if method == "GET" else "POST"
    seen: set[str] = set()
    for headers in ({}, {"HX-Request": "true"}):
        _names_read.clear()
        _probe(sweep, route, method, path, headers=headers)
        read = {name for kind, name in _names_read if kind == where}
        if headers and read <= seen:
            continue  # htmx's header changes nothing this view reads
        good = _accepted_values(sweep, route, method, path, sorted(read), headers)
        everything = sorted(read | set(ALWAYS_TRIED))
        for value in MALFORMED_VALUES:
            _probe(sweep, route, method, path, [(n, v) for n in everything for v in value], headers=headers)
        tried: set[str] = set()
        while read - tried:
            names = sorted(read - tried)
            tried.update(names)
            _names_read.clear()
            for name in names:
                others = [(other, value) for other, value in good.items() if other != name]
                for value in MALFORMED_VALUES:
                    _probe(sweep, route, method, path, [*others, *((name, v) for v in value)], headers=headers)
                for raw in RAW_QUERY_VALUES:
                    _probe(sweep, route, method, path, others, raw=[f"{name}={raw}"], headers=headers)
                for special in MALFORMED_BY_NAME.get(name, []):
                    _probe(sweep, route, method, path, [*others, (name, special)], headers=headers)
            read |= {name for kind, name in _names_read if kind == where}
        seen |= read


def _sweep_json_body(sweep: Sweep, route: Route, path: str) -> None:
    """A JSON body whose every name the view reads holds one hostile value, for each value; and
    one whose name is no Unicode text. All at once: a serializer answers every field it refuses."""
    _names_read.clear()
    _probe(sweep, route, "POST", path, json_body="{}")
    names = sorted(name for kind, name in _names_read if kind == "JSON" and isinstance(name, str))
    if not names:
        return
    sweep.json_read[route.name] = names
    for value in HOSTILE_JSON_VALUES:
        body = "{" + ", ".join(f'"{name}": {value}' for name in names) + "}"
        _probe(sweep, route, "POST", path, json_body=body)
    _probe(sweep, route, "POST", path, json_body='{"\\udc80": 1}')


def _accepted_values(
    sweep: Sweep, route: Route, method: str, path: str, names: list[str], headers: dict[str, str]
) -> dict[str, str]:
    """For each parameter, a real id or name the view accepts (an answer below 400), where one exists."""
    good: dict[str, str] = {}
    for name in names:
        for candidate in sweep.ids.strings:
            status = _probe(sweep, route, method, path, [*good.items(), (name, candidate)], headers=headers)
            if status < 400:
                good[name] = candidate
                if not headers:
                    sweep.reached[route.name] = min(sweep.reached[route.name], status)
                break
    return good


def _run(client: Client, ids: RealIds) -> Sweep:
    sweep = Sweep(client=client, ids=ids)
    for route in all_routes():
        _sweep_route(sweep, route)
    return sweep


def _report(sweep: Sweep) -> str:
    return f"{len(sweep.failures)} failures in {sweep.probes} requests:\n" + "\n".join(sweep.failures[:80])


@pytest.mark.timeout(1200)  # some thousands of requests: past 600 s on a machine under load (2 cores, load 8)
@pytest.mark.usefixtures("recording_middleware")
def test_no_route_answers_500_to_a_signed_in_person(everyone: User, real_ids: RealIds) -> None:
    client = Client()
    client.force_login(everyone)
    sweep = _run(client, real_ids)
    # The sweep went past the doors: with real ids these opened, so their parameters were tried.
    for name in (
        "requests:detail",
        "requests:instance_picker",
        "terminal:page",
        "terminal:recording",
        "audit:review",
        "api-instance-list",
        "api-request-detail",
        "admin:accounts_user_change",
    ):
        assert sweep.reached[name] == 200, (name, sweep.reached[name])
    # And into the API's JSON bodies: the names read there were found, so each was given hostile JSON.
    assert {"document", "port"} <= set(sweep.json_read["api-grant-session"])
    assert {"account", "instances", "reason"} <= set(sweep.json_read["api-request-list"])
    assert not sweep.failures, _report(sweep)


@pytest.mark.usefixtures("recording_middleware")
def test_no_route_answers_500_to_anonymous(real_ids: RealIds) -> None:
    sweep = _run(Client(), real_ids)
    assert not sweep.failures, _report(sweep)


# --- the findings of the sweep, each pinned on its own ----------------------------------------
def test_the_instance_picker_refuses_a_malformed_query(world: World, client: Client) -> None:
    client.force_login(world.requester)
    picker = "/requests/new/instances/"
    assert client.get(picker, {"account": "abc"}).status_code == 400
    assert client.get(picker, {"account": world.prod.pk, "q": "web\x00"}).status_code == 400
    assert client.get(picker, {"account": world.prod.pk, "instances": ["1", "x"]}).status_code == 400
    assert client.get(picker, {"account": "99999999999999999999"}).status_code == 404
    response = client.get(picker, {"account": world.prod.pk, "q": "web", "instances": [str(world.web.pk)]})
    assert response.status_code == 200 and "checked" in response.content.decode()


def test_malformed_cloud_ids_in_api_paths_are_404(world: World, client: Client) -> None:
    client.force_login(world.requester)
    assert client.get("/api/accounts/%00/instances/").status_code == 404
    assert client.get("/api/accounts/11111111111x/instances/").status_code == 404
    assert client.post("/api/requests/1/grants/i-0%00/password/").status_code == 404
    assert client.get("/api/accounts/111111111111/instances/").status_code == 200


def test_the_instance_api_refuses_a_malformed_search(world: World, client: Client) -> None:
    client.force_login(world.requester)
    response = client.get("/api/accounts/111111111111/instances/", {"search": "web\x00"})
    assert response.status_code == 400 and "search" in response.json()


def test_the_admin_refuses_an_empty_to_field(world: World, everyone: User, client: Client) -> None:
    client.force_login(everyone)
    change = f"/admin/accounts/user/{world.requester.pk}/change/"
    assert client.get(change).status_code == 200
    assert client.get(change, {"_to_field": ""}).status_code == 400
