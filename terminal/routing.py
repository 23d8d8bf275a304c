from django.urls import path

from terminal.consumers import TerminalConsumer

websocket_urlpatterns = [
    path("ws/terminal/<int:grant_id>/", TerminalConsumer.as_asgi()),
]
