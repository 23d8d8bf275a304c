from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts.models import User
from audit.admin_trail import AuditedAdminMixin, EvidenceAdminMixin
from core.admin_display import made_visible
from core.cross_site import cross_site_confirmed
from terminal import services
from terminal.models import TerminalSession

# Lines of output and input: their newlines and tabs stay (shown as lines), as on the recording's page.
_BLOCKS = frozenset({"transcript", "transcript_input"})


def _written_text(field: models.Field[Any, Any]) -> bool:
    """Text a host, a client or the cloud wrote (a command line, why a session ended, a transcript,
    its index of typed lines), as opposed to Passport's own choices, numbers, times and links."""
    return isinstance(field, models.CharField | models.TextField | models.JSONField) and not field.choices


def _made_visible(name: str) -> Callable[[TerminalSession], str]:
    """The field made visible (``core.admin_display``), a transcript keeping its lines and tabs."""
    return made_visible(TerminalSession, name, keep="\n\t" if name in _BLOCKS else "")


@admin.register(TerminalSession)
class TerminalSessionAdmin(EvidenceAdminMixin, AuditedAdminMixin, admin.ModelAdmin):
    """Recordings and their transcripts are evidence: shown to superusers, never added, changed or
    deleted, not even by them (EvidenceAdminMixin). Playing one is the portal's player, which checks
    the recording's digest and logs each viewing; the admin links to it. A session's page shows its
    transcripts, and is logged as a viewing too (``what="admin"``). What a host or a client
    wrote is shown made visible, as the portal's pages show it."""

    list_display = (
        "id",
        "user",
        "instance",
        "started_at",
        "ended_at",
        _made_visible("end_reason"),
        "bytes_in",
        "bytes_out",
        "play",
    )
    list_display_links = ("id",)
    list_select_related = ("user", "grant__instance")
    search_fields = ("user__username", "grant__instance__instance_id", "grant__instance__name")
    date_hierarchy = "started_at"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        # Every field (the transcripts among them), whatever the model gains later, after the player's link.
        return [
            "play",
            "instance",
            *(
                _made_visible(field.name) if _written_text(field) else field.name
                for field in TerminalSession._meta.fields
            ),
        ]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        # Only those: a text field not named here as itself would come back through the form, as it was.
        return self.get_readonly_fields(request, obj)

    # Its page is a read in the site admin's name (below): another site's navigation to it gets the
    # same "Continue" page the player's does, and nothing is written until the admin's own click.
    @method_decorator(cross_site_confirmed("read the transcripts of a recorded terminal session"))
    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().change_view(request, object_id, form_url, extra_context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        # The session's page shows its transcripts: a read of the recording, as the player's page is.
        if isinstance(obj, TerminalSession) and isinstance(request.user, User):
            services.recording_viewed(session=obj, user=request.user, what="admin")
        return super().render_change_form(request, context, add, change, form_url, obj)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # What was typed and printed on a host: superusers only here (auditors read it in the portal).
        return bool(request.user.is_active and request.user.is_superuser)

    @admin.display(description="Instance", ordering="grant__instance__name")
    def instance(self, session: TerminalSession) -> str:
        return session.grant.instance.label  # a Name tag, made visible (the admin escapes the HTML)

    @admin.display(description="Recording")
    def play(self, session: TerminalSession) -> SafeString:
        url = reverse("terminal:recording", args=[session.pk])
        return format_html('<a class="passport-admin-play" href="{}">Play in Passport</a>', url)
