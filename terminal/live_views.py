"""Live now: the open sessions a person may watch, watching one, and ending them with a reason.

Who may: ``accounts.permissions.live_session_visibility`` (the account's approvers, auditors, site
admins; never the person in the session), through terminal.selectors: anything else is a 404.
"""

from __future__ import annotations

import hashlib

from csp.constants import NONCE, SELF
from csp.decorators import csp_update
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers

from accounts import permissions
from accounts.page_limits import session_ends_limited
from core.cross_site import cross_site_confirmed
from core.errors import RequestRuleError
from terminal import live_services, selectors
from terminal.models import SessionKind, TerminalSession


class TerminateForm(forms.Form):
    reason = forms.CharField(
        max_length=live_services.REASON_MAX_CHARS,
        label="Why",
        help_text="The person sees this in their terminal; the Logbook keeps it.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. running a command the change did not cover"}),
        error_messages={"required": "Say why the session is being ended: the person will see it."},
    )
    scope = forms.ChoiceField(
        choices=[("session", "This session"), ("request", "All of this request's sessions")],
        initial="session",
    )  # sent by the button pressed: "End session" or "End all of this request's sessions"


def _seen(rows: list[selectors.LiveSession]) -> str:
    """What the page shows, in a few characters: its poll is answered 204 while it holds."""
    text = ";".join(
        f"{row.session.pk}:{row.session.bytes_in}:{row.session.bytes_out}:{','.join(row.watching)}" for row in rows
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@require_GET
@never_cache
@login_required
@vary_on_headers("HX-Request")  # one URL: the whole page, or the sessions fragment its poll swaps in
def live_now(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert user.is_authenticated
    if not permissions.may_watch_sessions_anywhere(user):
        raise PermissionDenied
    rows = selectors.live_session_list(user=user)
    context = {"rows": rows, "seen": _seen(rows), "nav": "live"}
    if request.headers.get("HX-Request") and request.GET.get("fragment") == "sessions":
        if request.GET.get("seen") == context["seen"]:
            return HttpResponse(status=204)
        return render(request, "terminal/_live_sessions.html", context)
    return render(request, "terminal/live.html", context)


@require_GET
@never_cache
@login_required
@cross_site_confirmed("watch a session (the person is told you watch; a moderated session runs while you do)")
# xterm.js sizes its rows with <style> elements it creates: admitted with the page's nonce only,
# which watch.js (loaded with it) gives them, as on the terminal page.
@csp_update({"style-src-elem": [SELF, NONCE]})  # type: ignore[arg-type]  # its types know no view arguments
def watch_page(request: HttpRequest, pk: int) -> HttpResponse:
    user = request.user
    assert user.is_authenticated
    session = selectors.live_session_get(user=user, pk=pk)
    return render(request, "terminal/watch.html", _watch_context(session, TerminateForm()))


def _watch_context(session: TerminalSession, form: TerminateForm) -> dict[str, object]:
    return {
        "session": session,
        "grant": session.grant,
        "instance": session.grant.instance,
        "req": session.grant.request,
        "form": form,
        "watchable": session.kind == SessionKind.SHELL,
        "nav": "live",
    }


@require_http_methods(["GET", "POST"])
@never_cache
@login_required
@session_ends_limited
def end_session(request: HttpRequest, pk: int) -> HttpResponse:
    """End one session, or all of its request's, with a reason (asked for on this page)."""
    user = request.user
    assert user.is_authenticated
    session = selectors.live_session_get(user=user, pk=pk)
    form = TerminateForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                if form.cleaned_data["scope"] == "request":
                    count = live_services.request_sessions_terminate(
                        access_request=session.grant.request, user=user, reason=form.cleaned_data["reason"]
                    )
                    messages.success(request, f"Ending {count} session{'s' if count != 1 else ''} of this request.")
                elif live_services.session_terminate(session=session, user=user, reason=form.cleaned_data["reason"]):
                    messages.success(request, f"Ending the session of {session.user.label}.")
                else:
                    messages.info(request, "That session had already ended.")
                return redirect("terminal:live")
            except RequestRuleError as error:
                for field, field_errors in error.errors.items():
                    for message in field_errors:
                        form.add_error(None if field == "__all__" else field, message)
        status = 400
    context = {"session": session, "req": session.grant.request, "form": form, "nav": "live"}
    return render(request, "terminal/end_session.html", context, status=status)
