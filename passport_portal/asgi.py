"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "passport_portal.settings")
django_asgi_app = get_asgi_application()

from passport_portal.start_checks import start_checks_run  # noqa: E402

# daphne runs no system checks of its own: an error found here stops the web process.
start_checks_run("web process")

from passport_portal.celery import broker_warm  # noqa: E402

# The first task a page queues costs no more than the next (passport_portal.celery.broker_warm).
broker_warm()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.session_lifetime import SessionLifetimeAsgiMiddleware  # noqa: E402
from passport_portal.proxies import ForwardedHeadersAsgiMiddleware  # noqa: E402
from passport_portal.websocket_origin import SameOriginValidator  # noqa: E402
from terminal.middleware import TerminalTicketMiddleware  # noqa: E402
from terminal.proxy.auth import CliProxyGate  # noqa: E402
from terminal.routing import cli_websocket_urlpatterns  # noqa: E402
from terminal.routing import websocket_urlpatterns as terminal_websocket_urlpatterns  # noqa: E402

websocket_urlpatterns: list = [*terminal_websocket_urlpatterns]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The forwarded headers count only from our proxies (passport_portal/proxies.py), as for HTTP.
        # The CLI's SSH proxy (/ws/cli/...) is authenticated by its bearer token alone and refuses
        # cookies (terminal/proxy/auth.py). Every other WebSocket: scheme, host and port of the Origin
        # must be the site's own (passport_portal/websocket_origin.py), then the session, ended if it is
        # past its fixed lifetime (accounts/session_lifetime.py), then the terminal's one-time ticket
        # (terminal/middleware.py) before any consumer.
        "websocket": ForwardedHeadersAsgiMiddleware(
            CliProxyGate(
                cli=URLRouter(cli_websocket_urlpatterns),
                browser=SameOriginValidator(
                    AuthMiddlewareStack(
                        SessionLifetimeAsgiMiddleware(TerminalTicketMiddleware(URLRouter(websocket_urlpatterns)))
                    )
                ),
            )
        ),
    }
)
