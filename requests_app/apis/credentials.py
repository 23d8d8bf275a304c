"""AWS credentials for one active request, for the AWS CLI and session-manager-plugin.

The portal assumes the account's role with a session policy that allows Session Manager on
the request's ready instances only, until the request ends (see
``services.access_request_issue_aws_credentials``). The answer is the only copy: nothing
is stored, and it is not cached on the way (the API answers ``no-store``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import error_responses
from requests_app import selectors, services
from requests_app.apis.common import _person


class CredentialProcessOutput(serializers.Serializer):
    Version = serializers.IntegerField(help_text="Always 1.")
    AccessKeyId = serializers.CharField()
    SecretAccessKey = serializers.CharField()
    SessionToken = serializers.CharField()
    Expiration = serializers.CharField(help_text="ISO 8601, UTC.")


class AwsCredentialsOutput(serializers.Serializer):
    access_key_id = serializers.CharField()
    secret_access_key = serializers.CharField()
    session_token = serializers.CharField()
    expiration = serializers.DateTimeField(help_text="When they stop working: at the latest, the request's end.")
    region = serializers.CharField(help_text="The region of the request's instances.")
    role_session_name = serializers.CharField()
    credential_process = CredentialProcessOutput(help_text="The same, as the AWS CLI's credential_process prints it.")


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AccessRequestAwsCredentialsApi(APIView):
    @extend_schema(
        summary="AWS credentials limited to Session Manager on your active request's instances",
        description="Only ssm:StartSession (AWS-StartSSHSession, AWS-StartPortForwardingSession) on the "
        "request's ready instances and ssm:TerminateSession on the sessions they start, until the "
        "request ends. Never stored by the portal; the Logbook records the access key id only.",
        request=None,
        responses={201: AwsCredentialsOutput, **error_responses(403, 404, 409)},
    )
    def post(self, request: Request, pk: int) -> Response:
        person = _person(request)
        access_request = selectors.access_request_get(user=person, pk=pk)
        scoped = services.access_request_issue_aws_credentials(access_request=access_request, user=person)
        expiration = _utc(scoped.expiration)
        return Response(
            {
                "access_key_id": scoped.access_key_id,
                "secret_access_key": scoped.secret_access_key,
                "session_token": scoped.session_token,
                "expiration": expiration,
                "region": scoped.regions[0],
                "role_session_name": scoped.role_session_name,
                "credential_process": {
                    "Version": 1,
                    "AccessKeyId": scoped.access_key_id,
                    "SecretAccessKey": scoped.secret_access_key,
                    "SessionToken": scoped.session_token,
                    "Expiration": expiration,
                },
            },
            status=status.HTTP_201_CREATED,
        )
