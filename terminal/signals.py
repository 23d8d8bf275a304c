"""Signing out closes the person's open terminals: the receiver only hands over to the service."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from terminal import services


@receiver(user_logged_out, dispatch_uid="terminal-close-on-sign-out")
def close_terminals_on_sign_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None and getattr(user, "pk", None) is not None:
        services.terminals_close_for_user(user_id=user.pk)
