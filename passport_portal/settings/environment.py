"""Which environment the portal runs in, its secrets, debug and the hosts it answers to.

``PASSPORT_ENV`` is development (the default: the demo), test or production. Production secrets
have no default, so a missing one stops the start; the demo's stand-ins are refused there."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from passport_portal.env import (
    env_bool,
    env_given,
    env_list,
    env_str,
    host_is_local,
    production_secret_check,
    url_host_is_local,
)

# passport_portal/settings/environment.py: three levels below the repository.
BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("PASSPORT_VAR_DIR", str(BASE_DIR / "var")))

PASSPORT_ENV = env_str("PASSPORT_ENV", "development")
if PASSPORT_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"PASSPORT_ENV={PASSPORT_ENV!r}: use development, test or production.")
PRODUCTION = PASSPORT_ENV == "production"

# Production secrets have no default: a missing one stops the start.
_DEV_SECRET = "dev-only-insecure-secret-key-do-not-use-in-production-0123456789"  # noqa: S105  # nosec B105
SECRET_KEY = env_str("PASSPORT_SECRET_KEY") if PRODUCTION else env_str("PASSPORT_SECRET_KEY", _DEV_SECRET)
# Keys the masked user ids in OS usernames; separate from SECRET_KEY so rotating one
# does not rename every short-lived user.
_DEV_USERNAME_KEY = "dev-username-key"
PASSPORT_USERNAME_KEY = (
    env_str("PASSPORT_USERNAME_KEY") if PRODUCTION else env_str("PASSPORT_USERNAME_KEY", _DEV_USERNAME_KEY)
)
# As for the CA key (portal.py) and the Logbook keys (logbook.py): a demo or guessable key would let
# anyone forge sessions and signed links (SECRET_KEY) or unmask the user ids in OS usernames (the
# username key).
for _name, _value, _demo in (
    ("PASSPORT_SECRET_KEY", SECRET_KEY, _DEV_SECRET),
    ("PASSPORT_USERNAME_KEY", PASSPORT_USERNAME_KEY, _DEV_USERNAME_KEY),
):
    if PRODUCTION:
        production_secret_check(_name, _value, _demo)
DEBUG = env_bool("PASSPORT_DEBUG", default=not PRODUCTION)
# Django's debug page shows the settings, DATABASE_URL and REDIS_URL whole (passwords included),
# and every exception's local variables: never in production.
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured(
        "PASSPORT_DEBUG is on with PASSPORT_ENV=production: debug pages would show the settings (connection "
        "passwords included) to anyone who causes an error. Unset PASSPORT_DEBUG."
    )
ALLOWED_HOSTS = env_list(
    "PASSPORT_ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env_list("PASSPORT_CSRF_TRUSTED_ORIGINS", [])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("PASSPORT_ALLOWED_HOSTS is required in production.")

# PASSPORT_ENV left out of a deployment's environment file (or a process started by hand without it)
# is development: the demo's published secrets below and in portal.py and logbook.py, debug pages on.
# Settings that reach beyond this host (a database or Redis elsewhere, a host name to answer to) are a
# deployment's: outside production, such a start is refused while any secret is the demo's. The demo
# (SQLite, no Redis), the tests and CI (services on loopback) and a development setup with secrets of
# its own are not concerned.
_EMBEDDED_SECRETS = (
    "PASSPORT_SECRET_KEY",
    "PASSPORT_USERNAME_KEY",
    "PASSPORT_CA_ENCRYPTION_KEY",
    "PASSPORT_LOGBOOK_KEY",
    "PASSPORT_LOGBOOK_SIGNING_KEY",
)
_LOCAL_HOST_NAMES = {"testserver", "*", ""}


def _deployment_signs() -> list[str]:
    """The settings that name another host than this one (never their values: URLs carry passwords)."""
    signs = [name for name in ("DATABASE_URL", "REDIS_URL") if not url_host_is_local(env_str(name, ""))]
    names = [host.lstrip(".") for host in ALLOWED_HOSTS]
    remote = [name for name in names if name not in _LOCAL_HOST_NAMES and not host_is_local(name)]
    remote = [name for name in remote if not name.endswith(".localhost")]
    if remote:
        signs.append(f"PASSPORT_ALLOWED_HOSTS ({', '.join(remote)})")
    return signs


if not PRODUCTION:
    _embedded = [name for name in _EMBEDDED_SECRETS if not env_given(name)]
    _signs = _deployment_signs() if _embedded else []
    if _signs:
        raise ImproperlyConfigured(
            f"PASSPORT_ENV is {PASSPORT_ENV if env_given('PASSPORT_ENV') else 'unset (development)'}, but "
            f"{' and '.join(_signs)} point at another host than this one: a deployment would run on the demo's "
            f"published secrets ({', '.join(_embedded)} not set) with debug pages on. Set "
            "PASSPORT_ENV=production and every secret (deploy/passport.env.example); for development against "
            "other hosts, set secrets of your own."
        )
