"""The page where a signed-in person confirms the code that `passport auth login` shows, and the
download of the CLI's published wheels."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods

from accounts import cli_services
from accounts.models import User


def _throttled(
    request: HttpRequest, context: dict[str, object], error: cli_services.DeviceCodeThrottled
) -> HttpResponse:
    context["error"] = error.message
    response = render(request, "accounts/device.html", context, status=429)
    response["Retry-After"] = str(error.retry_after)
    return response


@login_required
@require_http_methods(["GET", "POST"])
def device_confirm(request: HttpRequest) -> HttpResponse:
    code = (request.POST.get("user_code") or request.GET.get("code") or "").strip()
    context: dict[str, object] = {"user_code": cli_services.normalize_user_code(code) if code else "", "done": False}
    if request.method == "POST":
        assert isinstance(request.user, User)
        try:
            cli_services.device_authorization_confirm(user_code=code, user=request.user)
        except cli_services.DeviceCodeThrottled as error:
            return _throttled(request, context, error)
        except cli_services.DeviceFlowError as error:
            context["error"] = error.message
            return render(request, "accounts/device.html", context, status=400)
        messages.success(request, "The passport CLI is signed in. You can close this tab.")
        context["done"] = True
    elif code:
        assert isinstance(request.user, User)
        try:
            pending = cli_services.device_authorization_lookup(user_code=code, user=request.user)
        except cli_services.DeviceCodeThrottled as error:
            return _throttled(request, context, error)
        if pending is None:
            context["error"] = "This code is unknown or has expired: run `passport auth login` again."
        else:
            context["client_name"] = pending.client_name
    return render(request, "accounts/device.html", context)


@require_GET
def cli_release_download(request: HttpRequest, filename: str) -> FileResponse:
    """A wheel the manifest publishes, by exact name; any other name (or a path) is a 404."""
    found = cli_services.cli_release_open(filename=filename)
    if found is None:
        raise Http404("No such passport CLI release.")
    release, handle = found
    response = FileResponse(handle, as_attachment=True, filename=release.filename)
    response["Content-Type"] = "application/octet-stream"
    return response
