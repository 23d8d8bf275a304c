"""How mails leave: the console in the demo, a mail server (SMTP) in production."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from passport_portal.env import env_bool, env_int, env_str
from passport_portal.settings.environment import PRODUCTION

# How mails leave. The demo prints them to its log. Production sends them through a mail server:
# a password-reset mail carries a link that sets a break-glass site admin's password, so it must
# never end in the process log, a file on the host, memory or nowhere.
_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_BACKEND = env_str(
    "PASSPORT_EMAIL_BACKEND", _SMTP_BACKEND if PRODUCTION else "django.core.mail.backends.console.EmailBackend"
).strip()
_LOCAL_EMAIL_BACKENDS = {
    f"django.core.mail.backends.{name}.EmailBackend" for name in ("console", "filebased", "locmem", "dummy")
}
if PRODUCTION and EMAIL_BACKEND in _LOCAL_EMAIL_BACKENDS:
    raise ImproperlyConfigured(
        f"PASSPORT_EMAIL_BACKEND={EMAIL_BACKEND} keeps mails on this host (password-reset links in a log or a "
        "file) or drops them: production needs a mail server. Leave PASSPORT_EMAIL_BACKEND unset (SMTP) and set "
        "PASSPORT_EMAIL_HOST."
    )
EMAIL_HOST = env_str("PASSPORT_EMAIL_HOST", "")
if PRODUCTION and EMAIL_BACKEND == _SMTP_BACKEND and not EMAIL_HOST:
    raise ImproperlyConfigured(
        "PASSPORT_EMAIL_HOST is required in production: the mail server (SMTP) the portal's mails leave through."
    )
EMAIL_HOST = EMAIL_HOST or "localhost"
EMAIL_PORT = env_int("PASSPORT_EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("PASSPORT_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("PASSPORT_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("PASSPORT_EMAIL_USE_TLS", False)  # STARTTLS, usually on port 587
EMAIL_USE_SSL = env_bool("PASSPORT_EMAIL_USE_SSL", False)  # TLS from the start, usually on port 465
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("PASSPORT_EMAIL_USE_TLS and PASSPORT_EMAIL_USE_SSL: set one, not both.")
# Seconds per attempt to reach the server or send a message: a server that hangs must not hold a
# worker (or, with the broker down, a web request) for long, nor outlast a notification's claim.
EMAIL_TIMEOUT = env_int("PASSPORT_EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("PASSPORT_EMAIL_FROM", "Passport <passport@localhost>")
