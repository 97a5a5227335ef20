"""Serializers every app's admin-API views share: strict input and the documented error shapes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


# DRF's Serializer is generic only in its stubs (no django_stubs_ext monkeypatch here), so a
# base class cannot say Serializer[Any] at run time: the ignores below say it for mypy.
class StrictInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Rejects fields it does not declare: a PATCH of ``role`` or ``org`` must fail loudly, not be ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                allowed = ", ".join(sorted(self.fields)) or "none"
                raise serializers.ValidationError(
                    dict.fromkeys(unknown, f"This field cannot be set here; allowed fields: {allowed}.")
                )
        return super().to_internal_value(data)


class ErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    detail = serializers.CharField(help_text="What went wrong, in one sentence.")
    request_id = serializers.CharField(help_text="Quote it to support.")

    class Meta:
        ref_name = "Error"


class ValidationErrorSerializer(ErrorSerializer):
    # A field of the documented body, not Serializer.errors: this serializer only describes the schema.
    errors = serializers.DictField(required=False, help_text="The invalid fields and why.")  # type: ignore[assignment]

    class Meta:
        ref_name = "ValidationError"


_DESCRIPTIONS = {
    400: ("Invalid input: the detail names the field.", ValidationErrorSerializer),
    401: ("No API key or session, or an unknown, revoked or expired key (WWW-Authenticate: Bearer).", ErrorSerializer),
    403: ("Your role does not allow this: the detail names the role required (or CSRF failed).", ErrorSerializer),
    404: ("Not found, or not visible to you.", ErrorSerializer),
    409: ("Conflict with a concurrent change.", ErrorSerializer),
    410: ("Gone: already used, withdrawn or expired.", ErrorSerializer),
    429: ("Rate limit exceeded: the detail names the bucket; see Retry-After.", ErrorSerializer),
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """401, 404 and 429 are always possible for an authenticated org route; add the others per view."""
    wanted = sorted({401, 429, *codes})
    return {code: OpenApiResponse(_DESCRIPTIONS[code][1], description=_DESCRIPTIONS[code][0]) for code in wanted}
