from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from accounts import permissions
from accounts.models import AwsAccount, User
from core.errors import RequestRuleError
from requests_app import rules
from requests_app.models import DECISION_NOTE_MAX, Instance
from requests_app.selectors import in_managed_regions

_PK = re.compile(r"[0-9]{1,19}")

DURATION_CHOICES = [
    (15, "15 minutes"),
    (30, "30 minutes"),
    (60, "1 hour"),
    (120, "2 hours"),
    (240, "4 hours"),
    (480, "8 hours"),
    (720, "12 hours"),
]
EXTEND_CHOICES = [(15, "15 minutes"), (30, "30 minutes"), (60, "1 hour"), (120, "2 hours"), (240, "4 hours")]


class BoundedInstancesField(forms.ModelMultipleChoiceField):
    """Django's field, counting the ids before it looks them up: at most ``rules.INSTANCES_MAX``."""

    def clean(self, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) > rules.INSTANCES_MAX:
            raise ValidationError(rules.too_many_instances(len(value)), code="max_length")
        return super().clean(value)


class AccessRequestForm(forms.Form):
    account = forms.ModelChoiceField(queryset=AwsAccount.objects.none(), empty_label=None)
    instances = BoundedInstancesField(
        queryset=Instance.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one instance."},
    )
    duration = forms.TypedChoiceField(choices=DURATION_CHOICES, coerce=int, initial=60)
    reason = forms.CharField(
        max_length=256,
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": 256, "placeholder": "What are you going to do, and why?"}),
        error_messages={"required": "Say why you need access."},
    )
    ticket = forms.CharField(
        max_length=64, required=False, widget=forms.TextInput(attrs={"placeholder": "e.g. INC-4211"})
    )
    admin_rights = forms.BooleanField(
        required=False,
        label="Administrator rights",
        help_text="Linux: sudo. Windows: local Administrators (Domain Admins on a domain controller); "
        "without it, Remote Desktop Users only.",
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        accounts = permissions.requestable_accounts(user)
        self.fields["account"].queryset = accounts  # type: ignore[attr-defined]
        # Only in the regions each account still lists (the inventory visits no other).
        self.fields["instances"].queryset = Instance.objects.filter(  # type: ignore[attr-defined]
            in_managed_regions(accounts), gone_at__isnull=True
        ).select_related("account")
        if rules.ticket_required(user):
            # Refused by the service without one: the form says so first, under the field.
            ticket = self.fields["ticket"]
            ticket.required = True
            ticket.error_messages["required"] = rules.TICKET_REQUIRED_MESSAGE
            ticket.widget.attrs["aria-describedby"] = "ticket-help"  # the line the page says why under it

    @property
    def duration_value(self) -> timedelta:
        return timedelta(minutes=self.cleaned_data["duration"])

    def apply_rule_error(self, error: RequestRuleError) -> None:
        for field, messages in error.errors.items():
            for message in messages:
                self.add_error(field if field in self.fields else None, message)


class DecisionForm(forms.Form):
    note = forms.CharField(
        max_length=DECISION_NOTE_MAX,
        required=False,
        error_messages={"max_length": f"Keep the note to at most {DECISION_NOTE_MAX} characters."},
    )


class RejectForm(forms.Form):
    """A rejection says why: the requester reads it on their request, and the Logbook keeps it."""

    note = forms.CharField(
        max_length=DECISION_NOTE_MAX,
        label="Reason",
        help_text=f"Shown to the requester and kept in the Logbook. At most {DECISION_NOTE_MAX} characters.",
        widget=forms.Textarea(attrs={"rows": 3, "maxlength": DECISION_NOTE_MAX}),
    )


class ExtendForm(forms.Form):
    minutes = forms.TypedChoiceField(choices=EXTEND_CHOICES, coerce=int)

    def __init__(self, *args: Any, left: timedelta | None = None, **kwargs: Any) -> None:
        """``left``: what the 12 h budget still allows; only the choices that fit in it are offered."""
        super().__init__(*args, **kwargs)
        if left is not None:
            field = self.fields["minutes"]
            assert isinstance(field, forms.TypedChoiceField)
            field.choices = [
                (minutes, label) for minutes, label in EXTEND_CHOICES if timedelta(minutes=minutes) <= left
            ]


class InstancePickerForm(forms.Form):
    """The query behind the create form's instance list (re-rendered by htmx): malformed is a 400.

    The account is only checked to be an id here; whether the person may request on it is the
    view's lookup (a 404, as for any object they may not see).
    """

    account = forms.IntegerField(min_value=1)
    q = forms.CharField(required=False)
    # The boxes already ticked, by instance pk, so the re-rendered list keeps them ticked.
    instances = forms.Field(required=False, widget=forms.MultipleHiddenInput)
    # The summary's remove button: the instance to drop from the selection.
    remove = forms.IntegerField(required=False, min_value=1)

    def clean_q(self) -> str:
        return self.cleaned_data["q"][:100]

    def clean_instances(self) -> list[str]:
        values = self.cleaned_data["instances"] or []
        if not all(_PK.fullmatch(value) for value in values):
            raise forms.ValidationError("Instances are given by their numeric ids.")
        return list(values)
