"""The key form's per-key controls (apps/keys/controls.py): text in, lists and numbers out.

The form only splits and types the input; whether a model is offered to the org, a range
is a valid CIDR or a limit fits the plan is the service's decision, shown next to the field.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms

from apps.keys.controls import CONTROL_FIELDS

_SEPARATORS = re.compile(r"[\s,]+")


def _items(text: str) -> list[str]:
    return [item for item in _SEPARATORS.split(text or "") if item]


class KeyControlsForm(forms.Form):
    allowed_models = forms.CharField(
        label="Models this key may call",
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Names separated by commas or spaces; empty: every model of the organisation.",
    )
    allowed_ips = forms.CharField(
        label="Addresses this key may be used from",
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="IP addresses or CIDR ranges, e.g. 203.0.113.0/24; empty: anywhere.",
    )
    rpm_limit = forms.IntegerField(
        label="Requests per minute (this key)", required=False, min_value=1, help_text="Empty: the plan's."
    )
    tpm_limit = forms.IntegerField(
        label="Tokens per minute (this key)", required=False, min_value=1, help_text="Empty: the plan's."
    )

    def control_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "allowed_models": _items(data.get("allowed_models", "")),
            "allowed_ips": _items(data.get("allowed_ips", "")),
            "rpm_limit": data.get("rpm_limit"),
            "tpm_limit": data.get("tpm_limit"),
        }


def control_initial(key: Any) -> dict[str, Any]:
    values = {field: getattr(key, field) for field in CONTROL_FIELDS}
    return {
        **values,
        "allowed_models": ", ".join(values["allowed_models"]),
        "allowed_ips": ", ".join(values["allowed_ips"]),
    }
