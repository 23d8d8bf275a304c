"""The page where a signed-in person confirms the code that `passport auth login` shows, their
"CLI sign-ins" (the live tokens, each revocable), the download of the CLI's published wheels and
their signatures, and how to install the CLI (a page, and the install scripts it points to)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import cli_install, cli_releases, cli_services, cli_tokens
from accounts.address_limits import client_address_hit
from accounts.models import DeviceAuthorization, User
from accounts.page_limits import person_write_limited
from accounts.session_lifetime import session_deadline, session_idp_slug, session_idp_trust
from accounts.typing import AuthenticatedRequest
from audit.refusals import address_source, client_address
from core.cross_site import from_another_site


def _throttled(
    request: HttpRequest, context: dict[str, object], error: cli_services.DeviceCodeThrottled
) -> HttpResponse:
    context["error"] = error.message
    response = render(request, "accounts/device.html", context, status=429)
    response["Retry-After"] = str(error.retry_after)
    return response


@login_required
@require_http_methods(["GET", "POST"])
@person_write_limited
def device_confirm(request: HttpRequest) -> HttpResponse:
    code = (request.POST.get("user_code") or request.GET.get("code") or "").strip()
    context: dict[str, object] = {"user_code": cli_services.normalize_user_code(code) if code else "", "done": False}
    if request.method == "POST":
        assert isinstance(request.user, User)
        try:
            _, ends_at, _ = session_deadline(session=request.session)
            cli_services.device_authorization_confirm(
                user_code=code,
                user=request.user,
                session_ends_at=datetime.fromtimestamp(ends_at, UTC),
                idp_slug=session_idp_slug(request.session) or "",
                idp_trust=session_idp_trust(request.session),
                confirmed_from=client_address(request),
            )
        except cli_services.DeviceCodeThrottled as error:
            return _throttled(request, context, error)
        except cli_services.DeviceFlowError as error:
            context["error"] = error.message
            return render(request, "accounts/device.html", context, status=400)
        messages.success(request, "The passport CLI is signed in. You can close this tab.")
        context["done"] = True
    elif code and from_another_site(request):
        # Another site's link (a top-level navigation carries the Lax session cookie) would look the
        # code up as the person: an attempt on their count and, past it, cli.code_throttled in their
        # name. It only fills the code in; their own Continue, from this page, looks it up.
        context["sent_by_another_site"] = True
    elif code:
        assert isinstance(request.user, User)
        try:
            pending = cli_services.device_authorization_lookup(user_code=code, user=request.user)
        except cli_services.DeviceCodeThrottled as error:
            return _throttled(request, context, error)
        if pending is None:
            context["error"] = "This code is unknown or has expired: run `passport auth login` again."
        else:
            context.update(_started(request, pending))
    return render(request, "accounts/device.html", context)


def _started(request: HttpRequest, pending: DeviceAuthorization) -> dict[str, object]:
    """Who says they started the code, from where and when, and whether that is where this browser
    is: a code someone else started and sent the person (RFC 8628 section 5.4) is told apart by it."""
    here = client_address(request)
    started_from = pending.started_from or ""
    return {
        "client_name": pending.client_name,
        "started_from": started_from,
        "started_at": pending.created_at,
        "confirming_from": here,
        "started_elsewhere": bool(started_from and here) and address_source(started_from) != address_source(here),
    }


@require_GET
@never_cache
@login_required
def cli_sign_ins(request: AuthenticatedRequest) -> HttpResponse:
    tokens = list(cli_tokens.api_token_live_list(user=request.user))
    return render(request, "accounts/cli_sign_ins.html", {"tokens": tokens, "nav": "cli-sign-ins"})


# Revoking is never held back by the limit on changes: it only takes access away (accounts.page_limits).
@require_POST
@login_required
def cli_sign_in_revoke(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    token = cli_tokens.api_token_get_for_user(user=request.user, pk=pk)
    if token is None:
        raise Http404("No such CLI sign-in of yours.")
    cli_tokens.api_token_revoke(token=token, actor=request.user, reason=cli_tokens.RevokeReason.REVOKED)
    messages.success(request, f"Revoked: {token.name}. That command line must sign in again.")
    return redirect("cli-sign-ins")


@require_POST
@login_required
def cli_sign_ins_revoke_all(request: AuthenticatedRequest) -> HttpResponse:
    count = cli_tokens.api_tokens_revoke_for_user(
        user_id=request.user.pk, actor=request.user, reason=cli_tokens.RevokeReason.REVOKED
    )
    if count:
        messages.success(request, f"Revoked {count} CLI sign-in{'s' if count != 1 else ''}.")
    return redirect("cli-sign-ins")


@require_GET
def cli_release_download(request: HttpRequest, filename: str) -> HttpResponse | FileResponse:
    """A wheel the manifest publishes, or its signature (``<wheel>.sig``), by exact name; any other
    name (or a path) is a 404.

    Anyone may download one, a few a minute from one address (counted in the database, as the
    release index is): each is megabytes read from storage."""
    verdict = client_address_hit(
        request, scope="cli.release_download", limit_setting="PASSPORT_CLI_RELEASE_DOWNLOADS_PER_MINUTE"
    )
    if not verdict.allowed:
        wait = max(1, verdict.retry_after)
        refused = HttpResponse(
            f"Too many CLI downloads from this address: wait {wait} seconds.\n",
            status=429,
            content_type="text/plain; charset=utf-8",
        )
        refused["Retry-After"] = str(wait)
        return refused
    signature = cli_install.cli_release_signature_file(filename)
    if signature is not None:
        return HttpResponse(signature, content_type="application/json")
    found = cli_releases.cli_release_open(filename=filename)
    if found is None:
        raise Http404("No such passport CLI release.")
    release, handle = found
    response = FileResponse(handle, as_attachment=True, filename=release.filename)
    response["Content-Type"] = "application/octet-stream"
    return response


@require_GET
@never_cache
@login_required
def cli_install_page(request: AuthenticatedRequest) -> HttpResponse:
    """How to install the CLI: the newest release, its files, the install commands, how to verify."""
    info = cli_install.cli_install_info()
    context = {"info": info, "release": info.release, "nav": "cli-install"}
    return render(request, "accounts/cli_install.html", context)


def _script(kind: str) -> HttpResponse:
    script, ready = cli_install.cli_install_script(kind)
    # Refusals are still a script, so `curl -sL … | sh` prints why instead of running nothing.
    response = HttpResponse(script, content_type="text/plain; charset=utf-8", status=200 if ready else 503)
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
@never_cache
def cli_install_sh(request: HttpRequest) -> HttpResponse:
    """The Linux and macOS install script: no sign-in (curl fetches it), the same for everyone."""
    return _script("sh")


@require_GET
@never_cache
def cli_install_ps1(request: HttpRequest) -> HttpResponse:
    """The Windows install script (PowerShell): no sign-in, the same for everyone."""
    return _script("ps1")
