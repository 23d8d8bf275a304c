"""The Logbook filters as a form: one set of rules for the review page, the exports and the API."""

from __future__ import annotations

import re

from django import forms

from audit.selectors import LogbookFilters
from core.forms import TimeRangeForm

_ACCOUNT_ID = re.compile(r"\d{12}")
# EC2 (i-...) and hybrid managed (mi-...) ids. Whitespace would break the padded match.
_INSTANCE_ID = re.compile(r"[a-z]{1,3}-[0-9a-f]{1,32}")


class LogbookFilterForm(TimeRangeForm):
    field_order = ["account", "person", "request", "instance", "action", "since", "until", "q", "before", "after"]
    account = forms.CharField(
        required=False,
        max_length=20,
        label="Account",
        widget=forms.TextInput(
            attrs={"placeholder": "123456789012", "list": "logbook-accounts", "inputmode": "numeric"}
        ),
    )
    person = forms.CharField(
        required=False, max_length=150, label="Person", widget=forms.TextInput(attrs={"placeholder": "username"})
    )
    request = forms.IntegerField(
        required=False,
        min_value=1,
        label="Request",
        error_messages={"invalid": "A request id is a whole number."},
        widget=forms.TextInput(attrs={"placeholder": "1234", "inputmode": "numeric"}),
    )
    instance = forms.CharField(
        required=False, max_length=40, label="Instance", widget=forms.TextInput(attrs={"placeholder": "i-0abc…"})
    )
    action = forms.CharField(
        required=False,
        max_length=64,
        label="Action",
        widget=forms.TextInput(attrs={"placeholder": "any", "list": "logbook-actions"}),
    )
    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "action, person or detail"}),
    )
    # Keyset cursors: entry ids, not page numbers.
    before = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def clean_account(self) -> str:
        # People paste ids as shown by the AWS console: "1234-5678-9012".
        account = re.sub(r"[\s-]", "", self.cleaned_data["account"])
        if account and not _ACCOUNT_ID.fullmatch(account):
            raise forms.ValidationError("An AWS account id is exactly 12 digits.")
        return account

    def clean_instance(self) -> str:
        instance = self.cleaned_data["instance"].strip().lower()
        if instance and not _INSTANCE_ID.fullmatch(instance):
            raise forms.ValidationError("Enter one instance id, e.g. i-0123456789abcdef0.")
        return instance

    def clean_person(self) -> str:
        return self.cleaned_data["person"].strip()

    def clean_action(self) -> str:
        return self.cleaned_data["action"].strip()

    def to_filters(self) -> LogbookFilters:
        """The validated filters; call after ``is_valid()``."""
        data = self.cleaned_data
        return LogbookFilters(
            account_id=data.get("account") or "",
            person=data.get("person") or "",
            request_id=data.get("request"),
            instance_id=data.get("instance") or "",
            action=data.get("action") or "",
            since=data.get("since"),
            until=data.get("until"),
            text=(data.get("q") or "").strip(),
        )

    @property
    def cursor(self) -> tuple[int | None, int | None]:
        """(before, after) from a valid form."""
        return self.cleaned_data.get("before"), self.cleaned_data.get("after")

    def errors_by_field(self) -> dict[str, list[str]]:
        """Messages keyed by query parameter, as the API reports them."""
        return {name: [str(message) for message in messages] for name, messages in self.errors.items()}
