from typing import Any

from django.apps import AppConfig


def _preload_aws_clients(**kwargs: Any) -> None:
    """In a worker's main process, before its pool forks: the pool processes inherit what it read."""
    from fleet.aws.clients import preload

    preload()


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Workers"

    def ready(self) -> None:
        from celery.signals import worker_init

        # Registers the tasks that services queue by name (core.dispatch) in every process.
        from workers import tasks  # noqa: F401

        worker_init.connect(_preload_aws_clients, weak=False, dispatch_uid="passport-preload-aws-clients")
