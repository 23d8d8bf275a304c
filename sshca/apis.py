"""The CA's public keys over REST: a JSON list, and plain text for sshd and authorized_keys.

Both need a signed-in person or a bearer token (the default permission): public keys are
not secret, but which CA keys exist and when they rotate is nobody else's business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sshca.errors import CertificateRequestError
from sshca.selectors import ca_key_list
from sshca.services import ca_authorized_keys_lines, ca_keys_ensure, ca_trusted_public_keys


class CaKeyOutput(serializers.Serializer):
    key_type = serializers.CharField()
    public_key = serializers.CharField(help_text="OpenSSH public key line.")
    fingerprint = serializers.CharField(help_text="SHA256:<base64>, as ssh-keygen -l prints it.")
    state = serializers.ChoiceField(choices=["active", "trusted", "retired"])
    created_at = serializers.DateTimeField()


class CaKeyListApi(APIView):
    @extend_schema(
        operation_id="ca_key_list",
        summary="The CA's keys: active (signs), trusted (still trusted) and retired",
        responses={200: CaKeyOutput(many=True), 403: OpenApiResponse(description="Not signed in.")},
    )
    def get(self, request: Request) -> Response:
        ca_keys_ensure()  # created on first use: there is always something to publish
        return Response(CaKeyOutput(ca_key_list(), many=True).data)


class PlainTextRenderer(BaseRenderer):
    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        if isinstance(data, str):
            return data.encode()
        # Errors (403, 400) arrive as dicts; say them in one line of text.
        if isinstance(data, dict) and set(data) == {"detail"}:
            return f"{data['detail']}\n".encode()
        return (json.dumps(data) + "\n").encode()


class CaTrustedKeysTextApi(APIView):
    renderer_classes = [PlainTextRenderer]

    class Input(serializers.Serializer):
        principal = serializers.CharField(required=False, max_length=64)

    @extend_schema(
        operation_id="ca_trusted_keys_text",
        summary="Trusted CA public keys as text: a TrustedUserCAKeys file, or authorized_keys lines",
        parameters=[
            OpenApiParameter(
                "principal",
                OpenApiTypes.STR,
                description="A grant principal (`grant-<grant uid>`): each line becomes "
                '`cert-authority,principals="<principal>",permitopen="localhost:22",... <key>`, forwards '
                "limited to the instance itself on the ports every account opens (22, 3389), as provisioning "
                "writes them for an account with no extra ports.",
            )
        ],
        responses={
            (200, "text/plain"): OpenApiTypes.STR,
            (400, "text/plain"): OpenApiResponse(description="Not a grant principal."),
            (403, "text/plain"): OpenApiResponse(description="Not signed in."),
        },
    )
    def get(self, request: Request) -> Response:
        params = self.Input(data=request.query_params)
        params.is_valid(raise_exception=True)
        principal = params.validated_data.get("principal")
        if principal is None:
            lines = ca_trusted_public_keys()
        else:
            try:
                lines = ca_authorized_keys_lines(principal=principal)
            except CertificateRequestError as error:
                raise ValidationError({"principal": [str(error)]}) from None
        return Response("".join(f"{line}\n" for line in lines))
