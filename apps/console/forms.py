"""The console's forms: they parse and check input; the services decide and write."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.console.key_forms import KeyControlsForm
from apps.keys.services import MAX_GRACE
from apps.orgs.models import Membership, Role
from pendra_console.request_id import REQUEST_ID_SHAPE, is_request_id

GRACE_CHOICES = [
    (0, "None: the old secret stops now"),
    (3600, "1 hour"),
    (86400, "24 hours"),
    (3 * 86400, "3 days"),
    (7 * 86400, "7 days"),
    (int(MAX_GRACE.total_seconds()), "30 days"),
]
ROTATION_CHOICES = [("", "Never"), ("30", "Every 30 days"), ("90", "Every 90 days"), ("180", "Every 180 days")]


def _end_of_day(day: Any) -> datetime | None:
    """A date picked in the form means "until the end of that day" in the server's time zone."""
    if day is None:
        return None
    return timezone.make_aware(datetime.combine(day, time.max))


class OrgRenameForm(forms.Form):
    name = forms.CharField(label="Organisation name", max_length=100)


class OrgDeleteForm(forms.Form):
    confirm = forms.CharField(label="Type the organisation's slug to confirm", max_length=50)

    def __init__(self, *args: Any, slug: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slug = slug

    def clean_confirm(self) -> str:
        value: str = self.cleaned_data["confirm"].strip()
        if value != self.slug:
            raise forms.ValidationError(f"Type {self.slug} exactly to delete this organisation.")
        return value


class MemberChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.user.email} ({obj.get_role_display().lower()})"


class TransferOwnershipForm(forms.Form):
    member = MemberChoiceField(label="New owner", queryset=Membership.objects.none(), empty_label="Choose a member")

    def __init__(self, *args: Any, candidates: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["member"].queryset = candidates  # type: ignore[attr-defined]


class KeyCreateForm(KeyControlsForm):
    name = forms.CharField(label="Name", max_length=100, help_text="Where the key is used, e.g. production backend.")
    expires_on = forms.DateField(
        label="Expires on", required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Optional."
    )
    rotate_every_days = forms.TypedChoiceField(
        label="Rotate automatically", choices=ROTATION_CHOICES, coerce=int, empty_value=None, required=False
    )

    def clean_expires_on(self) -> Any:
        day = self.cleaned_data.get("expires_on")
        if day is not None and day < timezone.localdate():
            raise forms.ValidationError("Choose today or a later day.")
        return day

    def service_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "expires_at": _end_of_day(data.get("expires_on")),
            "rotate_every_days": data.get("rotate_every_days"),
            **self.control_fields(),
        }


class KeyPolicyForm(KeyCreateForm):
    rotation_grace_seconds = forms.TypedChoiceField(
        label="Grace when rotated on schedule", choices=GRACE_CHOICES, coerce=int, initial=86400
    )

    def __init__(self, *args: Any, key: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A schedule or grace set through the API may be none of the usual choices: offer it
        # too, or saving the name would silently change it.
        days, grace = key.rotate_every_days, key.rotation_grace_seconds
        rotation: Any = self.fields["rotate_every_days"]
        if days and str(days) not in dict(ROTATION_CHOICES):
            rotation.choices = [*ROTATION_CHOICES, (str(days), f"Every {days} days")]
        grace_field: Any = self.fields["rotation_grace_seconds"]
        if grace not in dict(GRACE_CHOICES):
            grace_field.choices = [*GRACE_CHOICES, (grace, f"{grace} seconds")]

    def service_fields(self) -> dict[str, Any]:
        return {**super().service_fields(), "rotation_grace_seconds": self.cleaned_data["rotation_grace_seconds"]}


class KeyRotateForm(forms.Form):
    grace_seconds = forms.TypedChoiceField(
        label="Keep the old secret working for", choices=GRACE_CHOICES, coerce=int, initial=86400
    )

    def grace(self) -> timedelta:
        return timedelta(seconds=self.cleaned_data["grace_seconds"])


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email", max_length=254)
    role = forms.ChoiceField(label="Role", choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=Role.choices)


class AuditFilterForm(forms.Form):
    actor = forms.TypedChoiceField(label="Actor", required=False, coerce=int, empty_value=None)
    action = forms.ChoiceField(label="Action", required=False, choices=[("", "Any action"), *AuditEvent.Type.choices])
    since = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, actors: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["actor"].choices = [("", "Anyone"), *actors]  # type: ignore[attr-defined]

    def filters(self) -> dict[str, Any]:
        """The selector's arguments; an invalid filter form means no filter, never a 500."""
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        since = data.get("since")
        until = data.get("until")
        return {
            "actor_id": data.get("actor"),
            "event_type": data.get("action") or None,
            "since": timezone.make_aware(datetime.combine(since, time.min)) if since else None,
            "until": _end_of_day(until) if until else None,
        }


class RequestLookupForm(forms.Form):
    request_id = forms.CharField(
        label="Request id",
        max_length=200,
        help_text="The X-Request-Id from the ticket: on every response, errors included.",
    )

    def clean_request_id(self) -> str:
        value: str = self.cleaned_data["request_id"].strip()
        if not is_request_id(value):
            raise forms.ValidationError(f"Not a request id: a request id is {REQUEST_ID_SHAPE}.")
        return value


PLATFORM_EVENT_TYPES = [
    AuditEvent.Type.REQUEST_LOOKED_UP,
    AuditEvent.Type.WORKER_REGISTERED,
    AuditEvent.Type.WORKER_CHANGED,
    AuditEvent.Type.WORKER_STATE_CHANGED,
    AuditEvent.Type.WORKER_REMOVED,
    AuditEvent.Type.PLAN_EDITED,
]


class PlatformAuditFilterForm(forms.Form):
    action = forms.ChoiceField(
        label="Action",
        required=False,
        choices=[("", "All actions"), *((t.value, t.label) for t in PLATFORM_EVENT_TYPES)],
    )

    def filters(self) -> dict[str, Any]:
        if not self.is_valid():
            return {}
        return {"event_type": self.cleaned_data["action"] or None}


# The request log's status filter: a class of codes, or 429 alone (rate limits are the common question).
STATUS_FILTER_CHOICES = [
    ("", "Any status"),
    ("2xx", "2xx success"),
    ("4xx", "4xx client error"),
    ("429", "429 rate limited"),
    ("5xx", "5xx server error"),
]


class RequestLogFilterForm(forms.Form):
    since = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    status = forms.ChoiceField(label="Status", required=False, choices=STATUS_FILTER_CHOICES)
    model = forms.CharField(label="Model", required=False, max_length=200)
    key = forms.ChoiceField(label="API key", required=False)
    worker = forms.CharField(label="Worker", required=False, max_length=100, help_text="Its X-Worker-Name.")

    def __init__(self, *args: Any, keys: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["key"].choices = [("", "Any key"), *keys]  # type: ignore[attr-defined]

    def filters(self) -> dict[str, Any]:
        """The selector's filters; an invalid form means no filter, never a 500."""
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        status = data.get("status") or ""
        return {
            "since": timezone.make_aware(datetime.combine(data["since"], time.min)) if data.get("since") else None,
            "until": _end_of_day(data.get("until")),
            "status": 429 if status == "429" else None,
            "status_class": status if status.endswith("xx") else None,
            "model": data.get("model", "").strip() or None,
            "key": data.get("key") or None,
            "worker": data.get("worker", "").strip() or None,
        }
