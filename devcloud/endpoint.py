"""moto's API endpoint over HTTP/1.1 connections that stay open between requests, as AWS's do.

moto's own ``ThreadedMotoServer`` runs werkzeug's development server, which answers every
request with ``Connection: close``. botocore keeps a pool of connections per client and reuses
them, so against that server each API call opened a new TCP connection, and the server a new
thread for it: CPU on both sides that AWS's endpoints, which keep connections alive, never
cost. Here waitress (a maintained WSGI server) serves the same moto application: connections
are kept until idle for ``IDLE_SECONDS``, and a fixed pool of threads answers the requests.

waitress does not pass on request headers whose names hold an underscore (WSGI could not tell
``X_Foo`` from ``X-Foo``). moto's own server kept them for S3 object metadata with underscores
in its keys; nothing of devcloud's or the portal's sends such a header.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from waitress.server import create_server

logger = logging.getLogger("devcloud.requests")

THREADS = 8  # requests answered at once; an idle kept-alive connection holds none
IDLE_SECONDS = 60  # an idle connection is closed; botocore opens a new one when its pooled one is gone
CONNECTION_LIMIT = 4096  # test suites open many clients, each with a pool of connections

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Application = Callable[[Environ, StartResponse], Iterable[bytes]]


def _logging_requests(application: Application) -> Application:
    """The application, logging each request's method, path and status (``--log-requests``)."""

    def logged(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            logger.info("%s %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        return application(environ, start)

    return logged


class Endpoint:
    """moto's application served on ``host:port`` (0: a free port) from a thread of this process."""

    def __init__(self, host: str, port: int, *, log_requests: bool = False) -> None:
        application: Application = DomainDispatcherApplication(create_backend_app)
        if log_requests:
            application = _logging_requests(application)
            if not logger.handlers:  # ``devcloud serve --log-requests`` configures no logging of its own
                logger.addHandler(logging.StreamHandler())
            logger.setLevel(logging.INFO)
        self._connections: dict[int, Any] = {}  # the server's socket map: its listener and every connection
        # Any: waitress's stubs give its trigger (a dispatcher with pull_trigger) as an int.
        self._server: Any = create_server(
            application,
            map=self._connections,
            host=host,
            port=port,
            threads=THREADS,
            channel_timeout=IDLE_SECONDS,
            connection_limit=CONNECTION_LIMIT,
            ident="devcloud",
            clear_untrusted_proxy_headers=True,
        )
        self._thread: threading.Thread | None = None
        self._stopped = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.run, name="devcloud-endpoint", daemon=True)
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        return str(self._server.effective_host), int(self._server.effective_port)

    def stop(self) -> None:
        """Finish the requests being answered, then close the listening socket and every connection."""
        if self._stopped:
            return
        self._stopped = True
        server = self._server
        server.task_dispatcher.shutdown()

        def close_everything() -> None:  # in the server's own loop, which then has nothing left and returns
            for dispatcher in list(self._connections.values()):
                dispatcher.close()

        server.trigger.pull_trigger(close_everything)
        if self._thread is not None:
            self._thread.join(timeout=10)
