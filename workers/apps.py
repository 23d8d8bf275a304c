import logging
from typing import Any

from django.apps import AppConfig

logger = logging.getLogger(__name__)


def _preload_aws_clients(**kwargs: Any) -> None:
    """In a worker's main process, before its pool forks: the pool processes inherit what it read.

    Only a saving: should it fail, each pool process reads the models itself, as before.
    """
    from fleet.aws.clients import preload

    try:
        preload()
    except Exception:
        logger.warning("could not read the AWS clients' models ahead; each pool process will", exc_info=True)


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers"

    def ready(self) -> None:
        from celery.signals import worker_init

        # Registers the tasks that services queue by name (core.dispatch) in every process.
        from workers import tasks  # noqa: F401

        worker_init.connect(_preload_aws_clients, weak=False, dispatch_uid="passport-preload-aws-clients")
