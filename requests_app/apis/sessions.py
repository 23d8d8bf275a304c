"""A Session Manager session to one instance of an active request, for `passport proxy` / `connect`.

The CLI speaks the data channel itself (``ssmchannel``); the portal only starts the session
(``StartSession``, with the account's role narrowed by a session policy to this one instance,
see ``services.grant_start_session``) and hands out the stream URL and token. Only the
requester gets one, only while the request is active and the grant ready; every start is in
the Logbook.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import choice_refusal, error_responses
from requests_app import services
from requests_app.apis.common import _grant, _person
from ssmchannel.documents import PORT_FORWARDING_DOCUMENT, SSH_DOCUMENT


class SessionInput(serializers.Serializer):
    document = serializers.ChoiceField(
        choices=[SSH_DOCUMENT, PORT_FORWARDING_DOCUMENT],
        default=SSH_DOCUMENT,
        error_messages={"invalid_choice": choice_refusal([SSH_DOCUMENT, PORT_FORWARDING_DOCUMENT])},
    )
    port = serializers.IntegerField(
        min_value=1, max_value=65535, required=False, help_text="Remote port: 22 for SSH, 3389 for RDP by default."
    )


class SessionOutput(serializers.Serializer):
    session_id = serializers.CharField()
    stream_url = serializers.CharField()
    token = serializers.CharField()


class GrantSessionApi(APIView):
    @extend_schema(
        summary="Start a Session Manager session to one instance of your active request",
        request=SessionInput,
        responses={201: SessionOutput, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int, instance_id: str) -> Response:
        payload = SessionInput(data=request.data)
        payload.is_valid(raise_exception=True)
        grant = _grant(request, pk, instance_id)
        started = services.grant_start_session(
            grant=grant,
            user=_person(request),
            document=payload.validated_data["document"],
            port=payload.validated_data.get("port"),
            via="cli",
        )
        return Response(
            {"session_id": started["SessionId"], "stream_url": started["StreamUrl"], "token": started["TokenValue"]},
            status=status.HTTP_201_CREATED,
        )
