"""The admin site: every model registered on it is audited, whoever registered it.

Passport's own admins declare the mixins (accounts/admin.py); Django's and allauth's admins
(groups, email addresses, second factors) are registered by their apps, so the site adds the
mixins to any class that lacks them. tests/passport_portal/test_admin_site.py checks the result.

Every admin POST runs in one transaction whose Logbook entries are appended at its end
(``logbook_batch``): what a change sets off through the signals (live access ended, approvals
discounted, tokens revoked) locks its rows before the Logbook's head, as every other transaction does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any, TypeVar, cast

from django.contrib import admin
from django.contrib.admin.exceptions import DisallowedModelAdminToField
from django.contrib.admin.options import TO_FIELD_VAR
from django.db import transaction
from django.db.models import Model
from django.db.models.base import ModelBase
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from audit.admin_trail import audited_admin_class
from audit.services import logbook_batch

_View = TypeVar("_View", bound=Callable[..., HttpResponseBase])


class PassportAdminSite(admin.AdminSite):
    # Passport's name on every admin page (templates/admin/base_site.html adds its mark and colours).
    site_header = "Passport administration"
    site_title = "Passport admin"
    index_title = "Passport: people, accounts and recordings"

    def register(
        self,
        model_or_iterable: type[Model] | Iterable[type[Model]],
        admin_class: type[admin.ModelAdmin[Any]] | None = None,
        **options: Any,
    ) -> None:
        models = [model_or_iterable] if isinstance(model_or_iterable, ModelBase) else model_or_iterable
        for model in models:
            super().register(model, audited_admin_class(model, admin_class or admin.ModelAdmin), **options)

    def admin_view(self, view: _View, cacheable: bool = False) -> _View:
        """Every admin view, refusing an empty ``_to_field``, a POST in one transaction with its
        Logbook entries appended last (see above).

        Django checks a non-empty ``_to_field`` against the fields the admin may look up by, but
        passes an empty one on to ``get_object``, which asks the model for a field named "" (a 500).
        """

        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if TO_FIELD_VAR in request.GET or (request.method == "POST" and TO_FIELD_VAR in request.POST):
                to_field = request.POST.get(TO_FIELD_VAR, request.GET.get(TO_FIELD_VAR))
                if not to_field:
                    raise DisallowedModelAdminToField("An empty _to_field is not a field.")
            if request.method == "POST":
                with transaction.atomic(), logbook_batch():
                    return view(request, *args, **kwargs)
            return view(request, *args, **kwargs)

        return cast(_View, super().admin_view(checked, cacheable))
