"""Run the whole portal in one process: web (daphne), a Celery worker and the scheduler.

This is how the embedded defaults work: with no Redis, the broker and the channel layer
live in this process's memory, so web, worker and scheduler must share it. With
``REDIS_URL`` set, run them as separate processes instead (``daphne``, ``celery worker``,
``celery beat``); this command still works and is handy for small installs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import beat
from django.conf import settings
from django.core.management.base import BaseCommand

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run web, worker and scheduler together in one process."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--concurrency", type=int, default=4, help="Worker threads.")

    def handle(self, *args: Any, host: str, port: int, concurrency: int, **options: Any) -> None:
        # Lazy for speed, not for a cycle: the ASGI application (and daphne) are built only when
        # the portal really starts, not by every manage.py command that lists the commands.
        from daphne.server import Server

        from passport_portal.asgi import application
        from passport_portal.celery import app

        worker = app.WorkController(
            pool_cls="threads",
            concurrency=concurrency,
            queues=settings.PASSPORT_WORKER_QUEUES,  # the default queue and the revocation queue
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
        )
        threading.Thread(target=worker.start, name="celery-worker", daemon=True).start()
        schedule_file = settings.VAR_DIR / "celerybeat-schedule"
        scheduler = beat.Service(app=app, schedule_filename=str(schedule_file), max_interval=5)
        threading.Thread(target=scheduler.start, name="celery-beat", daemon=True).start()
        self.stdout.write(f"Passport is listening on http://{host}:{port}/ (worker and scheduler in-process)")
        try:
            Server(application=application, endpoints=[f"tcp:port={port}:interface={host}"]).run()
        finally:
            scheduler.stop()
            worker.stop(in_sighandler=False)
