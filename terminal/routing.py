from django.urls import path

from terminal.consumers import TerminalConsumer
from terminal.proxy.consumer import CliProxyConsumer
from terminal.watch import WatchConsumer

websocket_urlpatterns = [
    path("ws/terminal/<int:grant_id>/", TerminalConsumer.as_asgi()),
    # Not under /ws/terminal/: no ticket (terminal.middleware); the permission is checked on connect.
    path("ws/watch/<int:session_id>/", WatchConsumer.as_asgi()),
]

# The CLI's recording SSH proxy: bearer token only, no cookie, no Origin (terminal.proxy.auth).
cli_websocket_urlpatterns = [
    path("ws/cli/requests/<int:request_id>/grants/<str:instance_id>/ssh/", CliProxyConsumer.as_asgi()),
]
