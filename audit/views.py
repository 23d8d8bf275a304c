from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.permissions import can_review_logbook


@login_required
def logbook_review(request: HttpRequest) -> HttpResponse:
    if not can_review_logbook(request.user):
        raise PermissionDenied
    return render(request, "audit/review.html", {})
