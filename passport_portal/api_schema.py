"""/api/schema/: the OpenAPI document, built once per web process.

It is public (anyone may read what the API looks like) and changes only on deploy, but
drf-spectacular builds it from every view on each call, several times a sign-in page's CPU: a
lever for anyone on the internet. Here it is built once, for no particular person (as for a
stranger: the schema is public, so it must not depend on who asks), and kept. The query's
``version`` and ``lang`` are ignored: the API has no versions and the document is in English, and
a cache keyed by what a stranger writes would grow without bound.
"""

from __future__ import annotations

import threading
from typing import Any

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SCHEMA_KWARGS, SpectacularAPIView
from rest_framework.request import Request
from rest_framework.response import Response

_lock = threading.Lock()
_schema: dict[str, Any] | None = None


class CachedSchemaView(SpectacularAPIView):
    @extend_schema(**SCHEMA_KWARGS)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(
            data=self._schema(),
            headers={"Content-Disposition": f'inline; filename="{self._get_filename(request, None)}"'},
        )

    def _schema(self) -> dict[str, Any]:
        global _schema
        with _lock:
            if _schema is None:
                generator = self.generator_class(urlconf=self.urlconf, api_version=None, patterns=self.patterns)
                _schema = generator.get_schema(request=None, public=self.serve_public)
            return _schema
