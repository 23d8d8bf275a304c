"""``manage.py check --deploy``: Redis and PostgreSQL are reached with a password and checked TLS, the
mail server with TLS.

Whoever reaches the broker can queue any of Passport's tasks; whoever reaches the database is
Passport. Across a network both need a password (a Redis ACL user) and TLS whose certificate is
checked: ``rediss://user:password@host:6380/0?ssl_cert_reqs=required`` and
``postgres://passport:password@db/passport?sslmode=verify-full``. Plain connections are accepted
only on the same host: a unix socket or a loopback address (still with the services' own
access control: Redis ``requirepass``/ACL, PostgreSQL's pg_hba.conf).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.core import checks

from core.links import base_url_clean
from passport_portal.env import host_is_local as _local

_UNVERIFIED = {"none", "cert_none", "optional", "cert_optional"}


def redis_url_problems(url: str) -> list[str]:
    """What is missing from a REDIS_URL that leaves this host; nothing for a local one."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        password = parts.password
    except ValueError:
        return ["it is not a URL"]
    if parts.scheme == "unix" or _local(host):
        return []
    problems = []
    if not password:
        problems.append("no password (a Redis ACL user: rediss://passport:PASSWORD@host:6380/0)")
    if parts.scheme != "rediss":
        problems.append("no TLS (rediss://)")
    else:
        cert_reqs = parse_qs(parts.query).get("ssl_cert_reqs", [""])[-1].lower()
        if cert_reqs in _UNVERIFIED or not cert_reqs:
            problems.append("the server's certificate is not checked (ssl_cert_reqs=required)")
    return problems


def database_problems(database: Mapping[str, Any]) -> list[str]:
    """What is missing from a PostgreSQL connection that leaves this host; nothing for a local one."""
    if "postgresql" not in str(database.get("ENGINE", "")):
        return []
    options = database.get("OPTIONS") or {}
    if _local(str(database.get("HOST") or "")):  # no host: libpq's unix socket
        return []
    problems = []
    if not database.get("PASSWORD") and not options.get("sslcert"):
        problems.append("no password (postgres://passport:PASSWORD@host/passport) nor client certificate")
    if options.get("sslmode") != "verify-full":
        problems.append("TLS without a checked certificate and host name (sslmode=verify-full)")
    return problems


def connections_check(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    found: list[checks.CheckMessage] = []
    redis_url = str(getattr(settings, "REDIS_URL", "") or "")
    if redis_url:
        problems = redis_url_problems(redis_url)
        if problems:
            found.append(
                checks.Warning(
                    "REDIS_URL leaves this host with " + "; ".join(problems) + ": anyone who reaches the broker "
                    "can queue Passport's tasks.",
                    hint="rediss://passport:PASSWORD@redis.internal:6380/0?ssl_cert_reqs=required "
                    "(deploy/README.md, Redis and PostgreSQL).",
                    id="passport.W001",
                )
            )
    for alias, database in settings.DATABASES.items():
        problems = database_problems(database)
        if problems:
            found.append(
                checks.Warning(
                    f"The {alias!r} database (DATABASE_URL) is reached across the network with " + "; ".join(problems),
                    hint="postgres://passport:PASSWORD@db.internal:5432/passport?sslmode=verify-full "
                    "(deploy/README.md, Redis and PostgreSQL).",
                    id="passport.W002",
                )
            )
    return found


def mail_check(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Mails carry the password-reset links of break-glass site admins, and the SMTP login its password:
    to a mail server on another host, plain SMTP shows both to the network (passport.W006). Django's
    SMTP backend checks the server's certificate under STARTTLS (EMAIL_USE_TLS) and TLS (EMAIL_USE_SSL)."""
    if getattr(settings, "EMAIL_BACKEND", "") != "django.core.mail.backends.smtp.EmailBackend":
        return []
    host = str(getattr(settings, "EMAIL_HOST", "") or "")
    if _local(host) or getattr(settings, "EMAIL_USE_TLS", False) or getattr(settings, "EMAIL_USE_SSL", False):
        return []
    return [
        checks.Warning(
            f"PASSPORT_EMAIL_HOST ({host!r}) is another host reached over plain SMTP: password-reset links "
            "and the SMTP password cross the network readable.",
            hint="PASSPORT_EMAIL_USE_TLS=true (STARTTLS, usually PASSPORT_EMAIL_PORT=587) or "
            "PASSPORT_EMAIL_USE_SSL=true (TLS from the start, usually 465).",
            id="passport.W006",
        )
    ]


def base_url_problem(url: str) -> str | None:
    """What is wrong with ``PASSPORT_BASE_URL`` for a deployment, or None. Read as the links read it
    (``core.links.portal_base_url``): a URL they cannot use is a problem however it starts."""
    base = base_url_clean(url)
    if not base and not url.strip().lower().startswith("https://"):
        return "is not an https:// address"
    if not base:
        return (
            "is not a plain http(s) URL the portal's links can use (a host name or address, [IPv6] "
            "in brackets, an optional port and path; no user, query, quote, space or line break)"
        )
    parts = urlsplit(base)
    if parts.scheme != "https" or not parts.hostname:
        return "is not an https:// address"
    if _local(parts.hostname):
        return "names this host only (localhost)"
    return None


def base_url_check(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    """Mails, SAML metadata and the CLI's install scripts send people to ``PASSPORT_BASE_URL``:
    left at its default (http://localhost:8000) a deployment points them at their own machine.
    In production an error (passport.E004: web processes and workers refuse to start,
    passport_portal.start_checks); elsewhere a warning (passport.W004)."""
    url = str(getattr(settings, "PASSPORT_BASE_URL", "") or "")
    problem = base_url_problem(url)
    if problem is None:
        return []
    production = getattr(settings, "PASSPORT_ENV", "") == "production"
    finding = checks.Error if production else checks.Warning
    return [
        finding(
            f"PASSPORT_BASE_URL ({url!r}) {problem}: the portal's mails, SAML metadata and CLI install "
            "scripts send people there.",
            hint="PASSPORT_BASE_URL=https://passport.example.com (deploy/passport.env.example).",
            id="passport.E004" if production else "passport.W004",
        )
    ]
