"""The Logbook review page and its exports. Thin: the form validates, selectors read."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from audit.account_names import account_names
from audit.anchor.checkpoints import logbook_checkpoint_after_export
from audit.anchor.status import anchor_status
from audit.export_limits import logbook_export_hit, too_many_exports
from audit.exports import LogbookExport
from audit.forms import LogbookFilterForm
from audit.list_limits import logbook_pages_hit, reads_refused, too_many_pages
from audit.permissions import can_review_logbook
from audit.selectors import (
    LogbookFilters,
    logbook_actions_seen,
    logbook_instance_names,
    logbook_latest_id,
    logbook_page,
)
from audit.services import logbook_export_record
from core.cross_site import cross_site_confirmed
from core.htmx import is_htmx


def _require_reviewer(request: HttpRequest) -> None:
    if not can_review_logbook(request.user):
        raise PermissionDenied("Only auditors may review the Logbook.")


def _review_url(params: dict[str, str], **cursor: int | None) -> str:
    merged = {**params, **{name: str(value) for name, value in cursor.items() if value is not None}}
    base = reverse("audit:review")
    return f"{base}?{urlencode(merged)}" if merged else base


def _too_many_pages(request: HttpRequest, wait: int) -> HttpResponse:
    message = too_many_pages(limit=settings.PASSPORT_LOGBOOK_PAGES_PER_MINUTE, wait=wait)
    return reads_refused(request, message=message, heading="Too many Logbook pages", wait=wait)


@require_GET
@login_required
def logbook_review(request: HttpRequest) -> HttpResponse:
    _require_reviewer(request)
    form = LogbookFilterForm(request.GET)
    # htmx swaps only the results; a history restore or a plain request gets the whole page.
    partial = is_htmx(request)
    context: dict[str, Any] = {"nav": "logbook", "form": form}
    if form.is_valid():
        # Each page read here is one of the person's Logbook pages, counted with the API's
        # (audit.list_limits): the same query, so paging here is held as paging there.
        verdict = logbook_pages_hit(user=cast(AbstractUser, request.user))  # behind login_required
        if not verdict.allowed:
            return _too_many_pages(request, verdict.retry_after)
        filters = form.to_filters()
        before, after = form.cursor
        page = logbook_page(
            user=request.user, filters=filters, size=settings.PASSPORT_LOGBOOK_PAGE_SIZE, before=before, after=after
        )
        params = filters.as_params()
        context.update(
            page=page,
            filters=filters,
            newer_url=_review_url(params, after=page.newer_cursor) if page.newer_cursor is not None else "",
            older_url=_review_url(params, before=page.older_cursor) if page.older_cursor is not None else "",
            newest_url=_review_url(params) if (before is not None or after is not None) else "",
            export_query=f"?{urlencode(params)}" if params else "",
            # Names beside the instance ids of the page's entries: one query for the page.
            instance_names=logbook_instance_names(page.entries),
        )
    # Account names for the rows and the filter's suggestions: one small query.
    context["account_names"] = account_names()
    if not partial:
        context["actions_seen"] = logbook_actions_seen(user=request.user)
        context["anchor"] = anchor_status()
    template = "audit/_results.html" if partial else "audit/review.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _export(request: HttpRequest, fmt: str) -> HttpResponseBase:
    _require_reviewer(request)
    form = LogbookFilterForm(request.GET)
    if not form.is_valid():
        messages = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors_by_field().items())
        return HttpResponseBadRequest(f"Invalid filters: {messages}", content_type="text/plain")
    filters: LogbookFilters = form.to_filters()
    actor = cast(AbstractUser, request.user)  # behind login_required: a real person
    verdict = logbook_export_hit(user=actor)
    if not verdict.allowed:
        message = too_many_exports(limit=settings.PASSPORT_LOGBOOK_EXPORTS_PER_HOUR, wait=verdict.retry_after)
        refused = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
        refused["Retry-After"] = str(verdict.retry_after)
        return refused
    # The export covers the Logbook as it stood when asked for; taking the copy is then
    # itself recorded, just after that point.
    up_to_id = logbook_latest_id() or 0
    logbook_export_record(actor=actor, fmt=fmt, up_to_id=up_to_id, filters=filters.as_params())
    # The head the copy was taken at (and its own record) goes to the evidence bucket, signed;
    # only once committed, so a checkpoint never names an entry that could still roll back.
    transaction.on_commit(logbook_checkpoint_after_export)
    export = LogbookExport(user=request.user, filters=filters, fmt=fmt, up_to_id=up_to_id)
    content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson; charset=utf-8"
    # Under ASGI an async iterator keeps the export streaming; Django would read a sync one whole first.
    chunks = export.async_chunks() if isinstance(request, ASGIRequest) else export.sync_chunks()
    response = StreamingHttpResponse(chunks, content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="logbook-{stamp}.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@login_required
@cross_site_confirmed("export the Logbook (the export is recorded in it, in your name)")
def logbook_export_csv(request: HttpRequest) -> HttpResponseBase:
    return _export(request, "csv")


@require_GET
@login_required
@cross_site_confirmed("export the Logbook (the export is recorded in it, in your name)")
def logbook_export_jsonl(request: HttpRequest) -> HttpResponseBase:
    return _export(request, "jsonl")
