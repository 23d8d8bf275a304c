"""``PASSPORT_IAM_CHECK`` off: a switch for tests, never for a deployment.

With it off, nobody's own IAM policies are asked (``requests_app/iam/``): anyone with an admin
membership reaches every instance of the account, whatever ssm:StartSession and
ssm:TerminateSession their principal is allowed. So ``check --deploy`` refuses it in production
(``passport.E001``), and every process says so in its log when it starts with the gate off.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core import checks

logger = logging.getLogger(__name__)

_OFF = "PASSPORT_IAM_CHECK is off: nobody's IAM policies are asked (ssm:StartSession, ssm:TerminateSession)"


def iam_gate_check(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    if settings.PASSPORT_ENV != "production" or settings.PASSPORT_IAM_CHECK:
        return []
    return [
        checks.Error(
            _OFF + ": an admin membership alone reaches every instance of the account.",
            hint="Unset PASSPORT_IAM_CHECK (it is on by default outside tests); the switch is for tests only.",
            id="passport.E001",
        )
    ]


def warn_if_off() -> None:
    """Log it at each process's start; under ``PASSPORT_ENV=test`` it is off by design."""
    if settings.PASSPORT_ENV != "test" and not settings.PASSPORT_IAM_CHECK:
        logger.warning("%s. It is a switch for tests only.", _OFF)
