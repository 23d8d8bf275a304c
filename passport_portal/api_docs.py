"""The browsable API at /api/docs/: Swagger UI from the pinned npm package, under the site's CSP.

drf-spectacular's own page loads Swagger UI from a CDN at ``@latest`` (whatever is published
that day runs with the person's session) and starts it with an inline script. This page takes
swagger-ui-dist from ``node_modules`` (package.json pins it; served as static files like
xterm.js) and starts it with ``static/api/docs.js``, so it needs nothing from outside the portal.
"""

from __future__ import annotations

from typing import Any

from csp.constants import SELF
from csp.decorators import csp_update
from django.utils.decorators import method_decorator
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.request import Request
from rest_framework.response import Response


# Swagger UI's stylesheet draws its icons as data: SVG images; nothing else on this page needs more
# than the site's policy.
@method_decorator(csp_update({"img-src": [SELF, "data:"]}), name="dispatch")
class ApiDocsView(SpectacularSwaggerView):
    template_name = "api/docs.html"

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(
            data={
                "title": self.title,
                "schema_url": self._get_schema_url(request),
                "csrf_header_name": self._get_csrf_header_name(),
            },
            template_name=self.template_name,
        )
