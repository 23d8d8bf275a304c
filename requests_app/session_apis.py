"""A Session Manager session to one instance of an active request, for `passport proxy` / `connect`.

The CLI speaks the data channel itself (``ssmchannel``); the portal only starts the session
with the account's role (``StartSession``) and hands out the stream URL and token. Only the
requester gets one, only while the request is active and the grant ready; every start is in
the Logbook.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import logbook_append
from requests_app.apis import _errors, _grant, _person
from requests_app.errors import NotAllowed, RequestRuleError
from requests_app.models import GrantStatus, Instance, RequestStatus
from workers.fleet import fleet_for
from workers.fleet.aws import FleetError

SSH_DOCUMENT = "AWS-StartSSHSession"
PORT_FORWARDING_DOCUMENT = "AWS-StartPortForwardingSession"


class SessionInput(serializers.Serializer):
    document = serializers.ChoiceField(choices=[SSH_DOCUMENT, PORT_FORWARDING_DOCUMENT], default=SSH_DOCUMENT)
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
        responses={201: SessionOutput, **_errors(400, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int, instance_id: str) -> Response:
        payload = SessionInput(data=request.data)
        payload.is_valid(raise_exception=True)
        grant = _grant(request, pk, instance_id)
        user = _person(request)
        access_request = grant.request
        if user.pk != access_request.requester_id:
            raise NotAllowed("Only the requester can use this access.")
        if access_request.status != RequestStatus.ACTIVE or grant.status != GrantStatus.READY:
            raise RequestRuleError(
                "Sessions start only while the request is active and the user is ready.", code="conflict"
            )
        document = payload.validated_data["document"]
        windows = grant.instance.platform == Instance.Platform.WINDOWS
        port = payload.validated_data.get("port") or (3389 if windows else 22)
        try:
            started = fleet_for(access_request.account).start_session(
                grant.instance.instance_id, grant.instance.region, document, {"portNumber": [str(port)]}
            )
        except FleetError as error:
            return Response({"detail": str(error)}, status=status.HTTP_502_BAD_GATEWAY)
        logbook_append(
            action="session.started",
            actor=user,
            account=access_request.account,
            request_id=access_request.pk,
            instance_ids=[grant.instance.instance_id],
            detail={"session_id": started["SessionId"], "document": document, "port": port, "via": "cli"},
        )
        return Response(
            {"session_id": started["SessionId"], "stream_url": started["StreamUrl"], "token": started["TokenValue"]},
            status=status.HTTP_201_CREATED,
        )
