from django.urls import path

from accounts import cli_apis

urlpatterns = [
    path("device/", cli_apis.DeviceStartApi.as_view(), name="api-cli-device"),
    path("token/", cli_apis.DeviceTokenApi.as_view(), name="api-cli-token"),
    path("token/revoke/", cli_apis.TokenRevokeApi.as_view(), name="api-cli-token-revoke"),
    path("releases/", cli_apis.CliReleaseIndexApi.as_view(), name="api-cli-releases"),
]
