"""AWS credentials for one active request, for the AWS CLI and session-manager-plugin.

The portal assumes the account's role with a session policy that allows Session Manager on
the request's ready instances only, until the request ends (see
``services.access_request_issue_aws_credentials``). One set works in every region of those
instances; the answer names each instance's region, where its sessions are started. The answer is the only copy: nothing
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
from requests_app.models import Instance


class CredentialProcessOutput(serializers.Serializer):
    Version = serializers.IntegerField(help_text="Always 1.")
    AccessKeyId = serializers.CharField()
    SecretAccessKey = serializers.CharField()
    SessionToken = serializers.CharField()
    Expiration = serializers.CharField(help_text="ISO 8601, UTC.")


class ReachedInstanceOutput(serializers.Serializer):
    instance_id = serializers.CharField()
    name = serializers.CharField(help_text="The instance's Name tag.")
    region = serializers.CharField(help_text="Where a session to it is started (the AWS CLI's --region).")


class WithheldInstanceOutput(ReachedInstanceOutput):
    reason = serializers.CharField(help_text="Why these credentials do not reach it.")


class AwsCredentialsOutput(serializers.Serializer):
    access_key_id = serializers.CharField()
    secret_access_key = serializers.CharField()
    session_token = serializers.CharField()
    expiration = serializers.DateTimeField(help_text="When they stop working: at the latest, the request's end.")
    region = serializers.CharField(
        allow_null=True,
        help_text="The region of the instances they reach when those share one; null when they are in several "
        "(see instances: a session is started in its instance's region).",
    )
    regions = serializers.ListField(child=serializers.CharField(), help_text="Every region they work in, sorted.")
    instances = ReachedInstanceOutput(many=True, help_text="The ready instances they reach, each with its region.")
    withheld = WithheldInstanceOutput(
        many=True, help_text="Ready instances they do not reach (a region taken off the account), and why."
    )
    role_session_name = serializers.CharField()
    credential_process = CredentialProcessOutput(help_text="The same, as the AWS CLI's credential_process prints it.")


def _instance_row(instance: Instance) -> dict[str, str]:
    return {"instance_id": instance.instance_id, "name": instance.name, "region": instance.region}


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
        issued = services.access_request_issue_aws_credentials(access_request=access_request, user=person)
        scoped = issued.scoped
        expiration = _utc(scoped.expiration)
        return Response(
            {
                "access_key_id": scoped.access_key_id,
                "secret_access_key": scoped.secret_access_key,
                "session_token": scoped.session_token,
                "expiration": expiration,
                "region": issued.region,
                "regions": list(scoped.regions),
                "instances": [_instance_row(instance) for instance in issued.instances],
                "withheld": [_instance_row(instance) | {"reason": reason} for instance, reason in issued.withheld],
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
