"""The Django project itself: installed apps, middleware, URLs, templates (the database: ``database.py``)."""

from __future__ import annotations

from passport_portal.settings.environment import BASE_DIR

INSTALLED_APPS = [
    "daphne",
    "passport_portal.apps.PassportAdminConfig",  # django.contrib.admin with the audited site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "channels",
    "core",
    "fleet",
    "accounts",
    "requests_app",
    "audit",
    "workers",
    "sshca",
    "terminal",
    "passport_portal.apps.PassportPortalConfig",
]

MIDDLEWARE = [
    # First, so it sees the response last: a streamed one hands its database connection back before
    # its body is sent, not after a slow client's last byte (passport_portal/middleware.py).
    "passport_portal.middleware.StreamingHandsConnectionBackMiddleware",
    # X-Forwarded-For/-Proto count only from PASSPORT_TRUSTED_PROXIES: dropped from anyone else
    # before the health endpoints, the https redirect, allauth, DRF or the refusal records read them.
    "passport_portal.proxies.ForwardedHeadersMiddleware",
    # Each request starts with no CLI token marked for the Logbook and leaves none to the next (audit/origin.py).
    "audit.origin.LogbookOriginMiddleware",
    # /healthz, /readyz and /metrics answer before the host check and the https redirect: load
    # balancers and scrapers call by address over plain http (passport_portal/health).
    "passport_portal.health.middleware.HealthEndpointsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "passport_portal.csp.PassportCSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # An htmx request that is refused gets one line the page shows, not a page it would not swap.
    "passport_portal.htmx_refusals.HtmxRefusalMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A signed-in session ends at a fixed time after its sign-in, however often it is written
    # (accounts/session_lifetime.py); before any view, so the API's session calls are ended too.
    "accounts.session_lifetime.SessionLifetimeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "passport_portal.middleware.NoStoreMiddleware",
    # A sign-out clears what pages left in the browser (passport_portal/middleware.py).
    "passport_portal.middleware.ClearSiteDataOnSignOutMiddleware",
]

ROOT_URLCONF = "passport_portal.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "passport_portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.navigation",
                "requests_app.context_processors.approvals_waiting",
            ],
            # visible / visible_lines in every template (core/templatetags/text.py).
            "builtins": ["core.templatetags.text"],
        },
    },
]

AUTH_USER_MODEL = "accounts.User"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
