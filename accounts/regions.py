"""An account's regions: a JSON list of AWS region names (``fleet.regions``), the model's validator
and the admin's form field.

The admin's form reads the field as JSON, which also spells what PostgreSQL cannot store in jsonb (a
NUL, a lone surrogate, Infinity, NaN): such a value was saved as it came and answered with a 500. A
list of region names holds none of them.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput

from fleet.regions import is_region

REGIONS_MESSAGE = 'Enter a JSON list of AWS region names, e.g. ["eu-west-1", "us-east-1"].'


def validate_regions(value: object) -> None:
    """Model validator: a JSON list of region names."""
    if not isinstance(value, list) or not all(is_region(name) for name in value):
        raise ValidationError(REGIONS_MESSAGE, code="invalid_regions")


class RegionListFormField(forms.JSONField):
    """Django's JSON field, shown again in ASCII: refused input read as JSON may hold a lone surrogate,
    which a page cannot be encoded with (Django writes it back with ``ensure_ascii=False``)."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, cls=self.encoder)
