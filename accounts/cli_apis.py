"""The device-authorization endpoints the `passport` CLI signs in with (no session, no token needed),
and the index of its published wheels that `passport version --self-update` reads."""

from __future__ import annotations

import math
from typing import NoReturn

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from accounts import cli_releases, cli_services, cli_tokens
from accounts.address_limits import client_address_hit
from accounts.models import ApiToken
from audit.refusals import client_address, client_source
from audit.throttle import ThrottleVerdict
from core.text import unsafe_text_message


class DeviceStartInput(serializers.Serializer):
    # Sent by whoever starts a sign-in (no login needed) and shown to the person who confirms it.
    client_name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")

    def validate_client_name(self, value: str) -> str:
        problem = unsafe_text_message("client_name", value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


class DeviceStartOutput(serializers.Serializer):
    device_code = serializers.CharField()
    user_code = serializers.CharField()
    verification_uri = serializers.CharField()
    verification_uri_complete = serializers.CharField()
    interval = serializers.IntegerField()
    expires_in = serializers.IntegerField()


class TokenInput(serializers.Serializer):
    device_code = serializers.CharField(max_length=200)


class TokenOutput(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.CharField()
    expires_in = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    username = serializers.CharField()


class DeviceErrorOutput(serializers.Serializer):
    error = serializers.CharField(help_text="authorization_pending, slow_down, expired_token, invalid_grant...")
    error_description = serializers.CharField()


class ClientAddressThrottle(BaseThrottle):
    """Requests per client address and minute, counted in the database (accounts.address_limits)."""

    scope = ""
    limit_setting = ""
    verdict: ThrottleVerdict | None = None

    def allow_request(self, request: Request, view: APIView) -> bool:
        self.verdict = client_address_hit(request, scope=self.scope, limit_setting=self.limit_setting)
        return self.verdict.allowed

    def wait(self) -> float | None:
        return float(self.verdict.retry_after) if self.verdict is not None else None


class DeviceStartThrottle(ClientAddressThrottle):
    """Each start stores a pending code."""

    scope = "cli.device_start"
    limit_setting = "PASSPORT_CLI_STARTS_PER_MINUTE"


class DeviceTokenThrottle(ClientAddressThrottle):
    """Each poll locks a row: guessed device codes at speed are refused before any lookup."""

    scope = "cli.device_token"
    limit_setting = "PASSPORT_CLI_TOKEN_POLLS_PER_MINUTE"


class CliReleaseIndexThrottle(ClientAddressThrottle):
    """Each listing (past the cache) reads the manifest and two files per release from storage."""

    scope = "cli.release_index"
    limit_setting = "PASSPORT_CLI_RELEASE_INDEX_READS_PER_MINUTE"


class ClientAddressThrottled(APIException):
    """429 with Retry-After (DRF's handler sets it from ``wait``) and the body given."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "throttled"

    def __init__(self, body: dict[str, str], wait: int) -> None:
        super().__init__(detail=body)
        self.wait = wait


def _seconds(wait: float | None) -> int:
    return max(1, math.ceil(wait or 0))


class DeviceStartApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [DeviceStartThrottle]

    def throttled(self, request: Request, wait: float | None) -> NoReturn:
        seconds = _seconds(wait)
        message = f"Too many sign-ins started from this address: wait {seconds} seconds."
        raise ClientAddressThrottled({"detail": message}, seconds)

    @extend_schema(
        summary="Start a CLI sign-in (device authorization)",
        request=DeviceStartInput,
        responses={200: DeviceStartOutput},
    )
    def post(self, request: Request) -> Response:
        payload = DeviceStartInput(data=request.data)
        payload.is_valid(raise_exception=True)
        started = cli_services.device_authorization_start(
            client_name=payload.validated_data["client_name"], started_from=client_address(request._request)
        )
        uri = request.build_absolute_uri(reverse("cli-device"))
        return Response(
            {
                "device_code": started.device_code,
                "user_code": started.user_code,
                "verification_uri": uri,
                "verification_uri_complete": f"{uri}?code={started.user_code}",
                "interval": cli_services.POLL_INTERVAL_SECONDS,
                "expires_in": int(cli_services.DEVICE_CODE_LIFETIME.total_seconds()),
            }
        )


class DeviceTokenApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [DeviceTokenThrottle]

    def throttled(self, request: Request, wait: float | None) -> NoReturn:
        # slow_down, so that a CLI backs off (RFC 8628 section 3.5) rather than give up.
        seconds = _seconds(wait)
        message = f"Too many sign-in polls from this address: wait {seconds} seconds."
        raise ClientAddressThrottled({"error": "slow_down", "error_description": message}, seconds)

    @extend_schema(
        summary="Poll for the CLI's bearer token",
        request=TokenInput,
        responses={
            200: TokenOutput,
            400: OpenApiResponse(DeviceErrorOutput),
            429: OpenApiResponse(DeviceErrorOutput, description="Too many polls from this address (Retry-After)"),
        },
    )
    def post(self, request: Request) -> Response:
        payload = TokenInput(data=request.data)
        if not payload.is_valid():
            return Response(
                {"error": "invalid_request", "error_description": "device_code is required."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        try:
            issued = cli_services.device_token_exchange(
                device_code=payload.validated_data["device_code"], source=client_source(request._request)
            )
        except cli_services.DeviceFlowError as error:
            return Response(
                {"error": error.code, "error_description": error.message}, status=status.HTTP_400_BAD_REQUEST
            )
        return Response(
            {
                "access_token": issued.token,
                "token_type": "Bearer",  # nosec B105
                # What this token has: no longer than the session that confirmed it.
                "expires_in": max(0, int((issued.expires_at - timezone.now()).total_seconds())),
                "expires_at": issued.expires_at,
                "username": issued.username,
            }
        )


class TokenRevokeApi(APIView):
    """`passport auth logout`: the token that signs this request is deleted."""

    permission_classes = [IsAuthenticated]

    def only_takes_access_away(self, request: Request) -> bool:
        """Signing out is never held back by the limit on changes (accounts.api_limits)."""
        return True

    @extend_schema(summary="Revoke the bearer token this request is signed with", request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        if isinstance(request.auth, ApiToken):
            cli_tokens.api_token_revoke(
                token=request.auth, actor=request.auth.user, reason=cli_tokens.RevokeReason.SIGNED_OUT
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class CliReleaseSignatureOutput(serializers.Serializer):
    format = serializers.CharField(help_text="passport-cli-release-signature/v1")
    key = serializers.CharField(help_text="SHA256 fingerprint of the release key that signed")
    signature = serializers.CharField(
        help_text="base64 Ed25519 signature over the wheel's name, version and SHA-256 "
        "(passport_cli.release_signature.signed_message)"
    )


class CliReleaseOutput(serializers.Serializer):
    version = serializers.CharField()
    filename = serializers.CharField()
    url = serializers.URLField()
    sha256 = serializers.CharField(help_text="hex SHA-256 of the wheel: the CLI refuses a download that differs")
    size = serializers.IntegerField()
    signature = CliReleaseSignatureOutput(
        allow_null=True,
        help_text="The release key's signature, made apart from the portal; the CLI installs nothing unsigned "
        "or signed by a key it was not built with.",
    )


class CliReleaseIndexOutput(serializers.Serializer):
    latest = serializers.CharField(allow_null=True)
    releases = CliReleaseOutput(many=True, help_text="newest version first")


class CliReleaseIndexApi(APIView):
    """Public and read-only: the CLI is not secret, and an expired sign-in must not stop an update."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [CliReleaseIndexThrottle]

    def throttled(self, request: Request, wait: float | None) -> NoReturn:
        seconds = _seconds(wait)
        message = f"Too many reads of the CLI's release index from this address: wait {seconds} seconds."
        raise ClientAddressThrottled({"detail": message}, seconds)

    @extend_schema(summary="The passport CLI's published versions (for --self-update)", responses=CliReleaseIndexOutput)
    def get(self, request: Request) -> Response:
        releases = [
            {
                "version": str(release.version),
                "filename": release.filename,
                "url": request.build_absolute_uri(reverse("cli-release-download", args=[release.filename])),
                "sha256": release.sha256,
                "size": release.size,
                "signature": release.signature.as_dict() if release.signature else None,
            }
            for release in cli_releases.cli_release_index()
        ]
        return Response({"latest": releases[0]["version"] if releases else None, "releases": releases})
