import logging
import os
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, import_modules, task_postrun, task_prerun

from core.logs import OneLine

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "passport_portal.settings")

logger = logging.getLogger(__name__)

app = Celery("passport")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def broker_warm() -> None:
    """A web process readies its side of the broker at start (asgi): Celery's app finalized, its
    result backend loaded, a connection to the broker opened and the queues declared. Otherwise the
    first page that queues a task pays for all of it, a quarter of a second or more: on the password
    reset page that time would tell an address someone has from one nobody has
    (accounts.password_reset_mail). The broker away: logged, and the first send tries again."""
    app.finalize(auto=True)
    app.backend  # noqa: B018  # loaded now (its first use imports the backends' entry points)
    try:
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=1, interval_start=0, timeout=3)
            for queue in app.amqp.queues.values():
                producer.maybe_declare(queue)
    except Exception as exc:
        logger.warning("the broker could not be reached at start (%s): the first task sent connects", exc)


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
    older than CONN_MAX_AGE, keep the others (CELERY_DB_REUSE_MAX keeps Celery from closing all).
    With the pool (production) CONN_MAX_AGE is 0: each task's connection goes back to it."""
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
