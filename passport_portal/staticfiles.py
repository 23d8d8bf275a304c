"""A static files finder that serves chosen files of a pinned npm package, and nothing else of it.

Most front-end packages are served whole from node_modules (STATICFILES_DIRS). swagger-ui-dist
also ships a demo index.html and an OAuth2 redirect page: served from the portal's origin, with
no CSP of ours and inline script, they would be pages of the portal nobody wrote. So only the
files /api/docs/ loads are published, as listed in settings.VENDOR_STATIC_FILES.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, overload

from django.conf import settings
from django.contrib.staticfiles.finders import BaseFinder
from django.contrib.staticfiles.utils import matches_patterns
from django.core.checks import CheckMessage, Warning
from django.core.files.storage import FileSystemStorage


def _picked() -> Iterator[tuple[str, Path, list[str]]]:
    for prefix, (root, names) in settings.VENDOR_STATIC_FILES.items():
        yield prefix.strip("/"), Path(root), list(names)


class PickedFilesFinder(BaseFinder):
    def check(self, **kwargs: Any) -> list[CheckMessage]:
        return [
            Warning(f"{root / name} does not exist: scripts/setup installs the npm packages.", id="passport.W003")
            for _, root, names in _picked()
            for name in names
            if not (root / name).is_file()
        ]

    @overload
    def find(self, path: str, find_all: Literal[False] = False) -> str | None: ...
    @overload
    def find(self, path: str, find_all: Literal[True]) -> list[str]: ...
    def find(self, path: str, find_all: bool = False) -> str | list[str] | None:
        for prefix, root, names in _picked():
            name = path.removeprefix(f"{prefix}/") if path.startswith(f"{prefix}/") else None
            if name in names and (root / name).is_file():
                found = str(root / name)
                return [found] if find_all else found
        # Not None, even for one: staticfiles.finders.find() would turn it into a match ([None]).
        return []

    def list(self, ignore_patterns: Iterable[str] | None) -> Iterator[tuple[str, FileSystemStorage]]:
        for prefix, root, names in _picked():
            storage = FileSystemStorage(location=root)
            storage.prefix = prefix  # type: ignore[attr-defined]  # collectstatic puts the files under it
            for name in names:
                if not matches_patterns(name, list(ignore_patterns or [])):
                    yield name, storage
