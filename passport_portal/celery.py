import os
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, import_modules, task_postrun, task_prerun

from core.logs import OneLine

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "passport_portal.settings")

app = Celery("passport")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@import_modules.connect(sender=app)
def _refuse_to_start_on_check_errors(sender: Any = None, **kwargs: Any) -> None:
    """A worker or beat loads the task modules first (Django is set up by then, by Celery's fixup,
    which runs the system checks but drops what they find): an error found stops it here."""
    from passport_portal.start_checks import start_checks_run

    start_checks_run("Celery worker or scheduler")


@task_prerun.connect
@task_postrun.connect
def _drop_spent_connections(sender: Any = None, **kwargs: Any) -> None:
    """Around each task, as Django around each request: close a connection that failed or is
    older than CONN_MAX_AGE, keep the others (CELERY_DB_REUSE_MAX keeps Celery from closing all)."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # run inline, inside the caller's transaction
    from django.db import close_old_connections

    close_old_connections()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _one_line_per_record(logger: Any = None, **kwargs: Any) -> None:
    """The worker's handlers (Celery's own formats) keep what a message quotes on its line (core.logs)."""
    for handler in getattr(logger, "handlers", []):
        handler.addFilter(OneLine())
