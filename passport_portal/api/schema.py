"""OpenAPI schema extensions (drf-spectacular registers each on import; see ``PassportPortalConfig.ready``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object

from accounts.authentication import BearerTokenAuthentication


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Describes ``accounts.authentication.BearerTokenAuthentication`` in the schema."""

    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=BearerTokenAuthentication.keyword
        )
