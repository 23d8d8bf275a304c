from django.urls import path

from accounts import cli_views

urlpatterns = [
    path("device/", cli_views.device_confirm, name="cli-device"),
    path("sign-ins/", cli_views.cli_sign_ins, name="cli-sign-ins"),
    path("sign-ins/<int:pk>/revoke/", cli_views.cli_sign_in_revoke, name="cli-sign-in-revoke"),
    path("sign-ins/revoke-all/", cli_views.cli_sign_ins_revoke_all, name="cli-sign-ins-revoke-all"),
    path("install/", cli_views.cli_install_page, name="cli-install"),
    path("install.sh", cli_views.cli_install_sh, name="cli-install-sh"),
    path("install.ps1", cli_views.cli_install_ps1, name="cli-install-ps1"),
    path("releases/<str:filename>", cli_views.cli_release_download, name="cli-release-download"),
]
