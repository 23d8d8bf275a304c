"""Logging: one line per record, to the console."""

from __future__ import annotations

from passport_portal.env import env_str

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # One record, one line, whatever a message quotes (core.logs).
    "filters": {"one_line": {"()": "core.logs.OneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["one_line"]}},
    "root": {"handlers": ["console"], "level": env_str("PASSPORT_LOG_LEVEL", "INFO")},
    "loggers": {
        "botocore": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "celery": {"level": env_str("PASSPORT_CELERY_LOG_LEVEL", "WARNING")},
        # Keeps the worker's "ready." line, which process supervisors and the tests wait for.
        "celery.apps.worker": {"level": "INFO"},
    },
}
