"""The system checks at the start of a process that ``manage.py`` does not start.

``manage.py`` commands run Django's system checks; daphne (``passport_portal.asgi``) and Celery's
worker and beat do not (Celery runs them and drops what they find). A web process or worker
started with an Error-level finding (a SAML identity provider over plain http, a signing key
without its certificate, the IAM gate off in production) would serve as if nothing were wrong:
each of them stops instead, naming every finding. In production the deployment checks run too,
and a ``PASSPORT_BASE_URL`` people cannot reach is one of their errors
(``passport_portal.connection_checks``). Warnings do not stop a start; ``check --deploy`` shows them.
"""

from __future__ import annotations

from django.conf import settings
from django.core import checks


class StartRefused(SystemExit):
    """Ends the process with its message on stderr and exit status 1, without a traceback."""


def start_findings() -> list[checks.CheckMessage]:
    """The Error-level findings of the system checks (deployment checks too in production), unsilenced."""
    found = checks.run_checks(include_deployment_checks=settings.PASSPORT_ENV == "production")
    return [message for message in found if message.level >= checks.ERROR and not message.is_silenced()]


def start_checks_run(process: str) -> None:
    """Stop ``process`` (its name, for the message) when a system check finds an error."""
    errors = start_findings()
    if not errors:
        return
    lines = [f"Passport's {process} will not start: the system checks found {len(errors)} error(s)."]
    # A check's message names the setting and what is wrong with it, never a secret's value.
    lines += [f"  {message}" for message in errors]
    lines.append("Fix the settings named above (`manage.py check --deploy` lists them), then start again.")
    raise StartRefused("\n".join(lines))
