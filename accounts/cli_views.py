"""The page where a signed-in person confirms the code that `passport auth login` shows."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from accounts import cli_services
from accounts.models import User


@login_required
@require_http_methods(["GET", "POST"])
def device_confirm(request: HttpRequest) -> HttpResponse:
    code = (request.POST.get("user_code") or request.GET.get("code") or "").strip()
    context: dict[str, object] = {"user_code": cli_services.normalize_user_code(code) if code else "", "done": False}
    if request.method == "POST":
        assert isinstance(request.user, User)
        try:
            cli_services.device_authorization_confirm(user_code=code, user=request.user)
        except cli_services.DeviceFlowError as error:
            context["error"] = error.message
            return render(request, "accounts/device.html", context, status=400)
        messages.success(request, "The passport CLI is signed in. You can close this tab.")
        context["done"] = True
    elif code:
        pending = cli_services.device_authorization_pending(user_code=code)
        if pending is None:
            context["error"] = "This code is unknown or has expired: run `passport auth login` again."
        else:
            context["client_name"] = pending.client_name
    return render(request, "accounts/device.html", context)
