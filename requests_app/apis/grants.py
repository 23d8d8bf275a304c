"""What one grant gives the requester: an SSH certificate (Linux) or the password (Windows)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import AwsAccount
from core.api import error_responses
from requests_app import services
from requests_app.apis.common import _grant, _person
from sshca.services import host_ca_public_keys


class CertificateInput(serializers.Serializer):
    public_key = serializers.CharField(max_length=16384, help_text="Your OpenSSH public key line (Ed25519 or RSA).")


class CertificateOutput(serializers.Serializer):
    username = serializers.CharField(help_text="The short-lived user to log in as.")
    principal = serializers.CharField(
        help_text="The certificates' one principal: this grant's (`grant-<uid>`), valid nowhere else; on an account "
        "whose sessions are recorded `proxy-grant-<uid>`, which only the portal's recording proxy accepts."
    )
    certificates = serializers.ListField(child=serializers.CharField(), help_text="Try them in this order.")
    valid_before = serializers.DateTimeField()
    sessions = serializers.ChoiceField(
        choices=AwsAccount.CliSessions.choices,
        help_text="`record`: ssh goes through the portal's recording proxy, whose host certificate is signed by "
        "one of `host_certificate_authorities` (pin them, no trust on first use); `direct`: the CLI speaks the "
        "Session Manager data channel itself (not recorded).",
    )
    host_certificate_authorities = serializers.ListField(
        child=serializers.CharField(),
        help_text="OpenSSH public key lines of the portal's host CA (active and still trusted keys): "
        "known_hosts `@cert-authority` lines for the instances.",
    )


class GrantCertificateApi(APIView):
    @extend_schema(
        summary="Sign your public key for one instance of an active request",
        request=CertificateInput,
        responses={200: CertificateOutput, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int, instance_id: str) -> Response:
        payload = CertificateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        grant = _grant(request, pk, instance_id)
        certificates = services.grant_issue_certificate(
            grant=grant, user=_person(request), public_key=payload.validated_data["public_key"]
        )
        return Response(
            {
                "username": grant.username,
                "principal": services.certificate_principal(grant, upstream=False),
                "certificates": certificates,
                "valid_before": grant.request.expires_at,
                "sessions": grant.request.account.cli_sessions,
                "host_certificate_authorities": host_ca_public_keys(),
            }
        )


class PasswordOutput(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField()


class GrantPasswordApi(APIView):
    @extend_schema(
        summary="The Windows password of one instance of an active request (each read is logged)",
        request=None,
        responses={200: PasswordOutput, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request: Request, pk: int, instance_id: str) -> Response:
        grant = _grant(request, pk, instance_id)
        password = services.grant_reveal_password(grant=grant, user=_person(request))
        return Response({"username": grant.username, "password": password})
