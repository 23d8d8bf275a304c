from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from passport_portal.api_docs import ApiDocsView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="requests:list", permanent=False)),
    path("accounts/saml/", include("accounts.saml.urls")),
    path("accounts/", include("allauth.urls")),
    path("requests/", include("requests_app.urls")),
    path("logbook/", include("audit.urls")),
    path("ca/", include("sshca.urls")),
    path("terminal/", include("terminal.urls")),
    path("cli/", include("accounts.cli_urls")),
    path("api/", include("passport_portal.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
