"""Every route the URL resolver knows, with a way to build a path for any argument values.

Tests that must hold for every page and API endpoint (no 500 on malformed input, the
security headers) walk this list, so a route added later is covered without a new test.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern
from django.utils.regex_helper import normalize


@dataclass(frozen=True)
class Route:
    name: str  # namespaced, e.g. "requests:detail"; the pattern itself when unnamed
    regex: str  # the whole path's regex, prefixes included
    arguments: tuple[str, ...]  # the named arguments the path carries, in order
    converters: tuple[tuple[str, str], ...]  # argument -> converter class name (RoutePattern routes only)

    def path(self, values: dict[str, str]) -> str:
        """The path with these (quoted) values in place, valid for the route's converters or not."""
        for template, parameters in normalize(self.regex):
            if set(parameters) == set(self.arguments):
                quoted = {name: quote(values[name], safe="") for name in parameters}
                return "/" + template % quoted
        raise AssertionError(f"{self.name}: no way to build a path from {self.regex!r}")

    def __str__(self) -> str:
        return self.name


def _regex(pattern: object) -> str:
    text: str = pattern.regex.pattern  # type: ignore[attr-defined]
    return text.removeprefix("^")


def _walk(patterns: list, prefix: str, namespace: str, converters: dict[str, str]) -> Iterator[Route]:
    for entry in patterns:
        regex = prefix + _regex(entry.pattern)
        found = dict(converters)
        if isinstance(entry.pattern, RoutePattern):
            found.update({name: type(conv).__name__ for name, conv in entry.pattern.converters.items()})
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, regex, inner, found)
        elif isinstance(entry, URLPattern):
            candidates = normalize(regex)
            arguments = tuple(candidates[0][1]) if candidates else ()
            name = f"{namespace}{entry.name}" if entry.name else regex
            yield Route(
                name=name,
                regex=regex,
                arguments=arguments,
                converters=tuple((arg, found.get(arg, "regex")) for arg in arguments),
            )


def all_routes() -> list[Route]:
    return list(_walk(get_resolver().url_patterns, "", "", {}))


@dataclass(frozen=True)
class RealIds:
    """Ids with something behind them: integers for ``int`` converters, any of them for the rest."""

    ints: list[str]
    strings: list[str]
    grant: str = ""  # a ready grant of an active request (its terminal opens)
    recording: str = ""  # a sealed terminal recording

    def candidates(self, route: Route, limit: int = 60) -> Iterator[dict[str, str]]:
        """Argument values for the route, real ids first in every combination (at most ``limit``)."""
        pools = [self.ints if kind == "IntConverter" else self.strings for _, kind in route.converters]
        for values in itertools.islice(itertools.product(*pools), limit):
            yield dict(zip(route.arguments, values, strict=True))
