from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from accounts.password_views import email_set_by_others, password_set_unless_idp
from accounts.sign_out_views import sign_out
from passport_portal.api_docs import ApiDocsView
from passport_portal.api_schema import CachedSchemaView
from passport_portal.health import views as health
from passport_portal.site_pages import admin_password_change, admin_sign_in, admin_sign_out, favicon

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="requests:list", permanent=False)),
    path("favicon.ico", favicon, name="favicon"),
    # For load balancers and Prometheus; answered first by passport_portal.health.middleware.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("accounts/saml/", include("accounts.saml.urls")),
    # Before allauth's own: no local password for people who sign in through an identity provider.
    path("accounts/password/set/", password_set_unless_idp, name="account_set_password"),
    # Nor does anyone change their own email: it says which accounts are one person.
    path("accounts/email/", email_set_by_others, name="account_email"),
    # And signing out through an IdP always signs out there too, whatever `next` the link names.
    path("accounts/logout/", sign_out, name="account_logout"),
    path("accounts/", include("allauth.urls")),
    path("requests/", include("requests_app.urls")),
    path("logbook/", include("audit.urls")),
    path("ca/", include("sshca.urls")),
    path("terminal/", include("terminal.urls")),
    path("cli/", include("accounts.cli_urls")),
    path("api/", include("passport_portal.api_urls")),
    # Public, built once per process (passport_portal/api_schema.py).
    path("api/schema/", CachedSchemaView.as_view(), name="api-schema"),
    path("api/docs/", ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
    # Before the admin's own: one way in (and out) for everyone, with its TOTP step, limits and Logbook.
    path("admin/login/", admin_sign_in, name="admin-sign-in"),
    path("admin/password_change/", admin_password_change, name="admin-password-change"),
    path("admin/logout/", admin_sign_out, name="admin-sign-out"),
    path("admin/", admin.site.urls),
]
