from django.urls import include, path

urlpatterns = [
    path("", include("requests_app.api_urls")),
    path("logbook/", include("audit.api_urls")),
    path("ca/", include("sshca.api_urls")),
    path("cli/", include("accounts.cli_api_urls")),
]
