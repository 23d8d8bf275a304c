from django.urls import path

from accounts import cli_views

urlpatterns = [
    path("device/", cli_views.device_confirm, name="cli-device"),
    path("releases/<str:filename>", cli_views.cli_release_download, name="cli-release-download"),
]
