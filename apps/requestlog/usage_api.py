"""Billed usage over the admin API: JSON, or the same rows as CSV (``?format=csv`` or ``Accept: text/csv``)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from django.http import Http404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from apps.orgs.models import Role, role_at_least
from apps.orgs.permissions import OrgScopedAPIView
from apps.requestlog import selectors
from apps.requestlog.api import TAGS
from pendra_console.api.serializers import error_responses

MAX_USAGE_RANGE = timedelta(days=366)
SUMS = ["requests", "prompt_tokens", "completion_tokens", "total_tokens", "units", "cost"]
# The CSV's columns per grouping: what identifies the row, then the sums.
CSV_COLUMNS = {
    "day": ["day", "label", *SUMS],
    "model": ["model", "label", *SUMS],
    "key": ["key_id", "label", *SUMS],
    "member": ["member_id", "label", *SUMS],
}


class UsageQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(
        required=False, help_text="Widened down to the whole hour. Default: until - 30 days."
    )
    until = serializers.DateTimeField(required=False, help_text="Widened up to the whole hour. Default: now.")
    group_by = serializers.ChoiceField(choices=list(selectors.GROUPINGS), default="day")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        until = attrs.get("until") or timezone.now()
        since = attrs.get("since") or until - timedelta(days=30)
        if since >= until:
            raise ValidationError({"since": "must be before until."})
        if until - since > MAX_USAGE_RANGE:
            raise ValidationError({"since": "the range may span at most 366 days."})
        return {**attrs, "since": since, "until": until}


class UsageRowSerializer(serializers.Serializer):
    day = serializers.DateField(required=False, help_text="group_by=day: the UTC day.")
    model = serializers.CharField(required=False, help_text="group_by=model.")
    key_id = serializers.IntegerField(required=False, help_text="group_by=key: the key's id (null: no key).")
    member_id = serializers.IntegerField(required=False, help_text="group_by=member: the key's user (null: none).")
    label = serializers.CharField(required=False, help_text="The row's group in words (a key's name and prefix, ...).")
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    units = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=20, decimal_places=10, help_text="USD, as a decimal string.")


class UsageOutputSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    group_by = serializers.CharField()
    totals = UsageRowSerializer()
    rows = UsageRowSerializer(many=True)


# A spreadsheet runs a cell starting with one of these as a formula; a key's name is the caller's text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class UsageCSVRenderer(BaseRenderer):
    """The JSON's ``rows``, already serialized, one CSV line each: the same values, the same order."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        columns = CSV_COLUMNS[data["group_by"]]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        for row in data["rows"]:
            writer.writerow([_cell(row.get(column)) for column in columns])
        return out.getvalue().encode()


class OrgUsageView(OrgScopedAPIView):
    scope_map = {"GET": Role.MEMBER}
    renderer_classes = [JSONRenderer, UsageCSVRenderer]

    @extend_schema(
        tags=TAGS,
        summary="Billed usage (successful requests only) by day, model, key or member; members: their own keys'",
        description=(
            "Read from the hourly roll-up. `format=csv` (or `Accept: text/csv`) answers the same "
            "`rows`, in the same order and with the same values, as CSV; errors are JSON either way."
        ),
        parameters=[
            UsageQuerySerializer,
            OpenApiParameter("format", str, enum=["json", "csv"], required=False, description="Default: json."),
        ],
        responses={
            (200, "application/json"): UsageOutputSerializer,
            (200, "text/csv"): OpenApiTypes.STR,
            **error_responses(400, 403, 404),
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        member = None if role_at_least(self.role, Role.ADMIN) else request.user
        params = query.validated_data
        report = selectors.usage_report(self.org, params["group_by"], params["since"], params["until"], member=member)
        payload = {
            "since": report.since,
            "until": report.until,
            "group_by": report.group_by,
            "totals": report.totals,
            "rows": report.rows,
        }
        response = Response(UsageOutputSerializer(payload).data)
        if request.accepted_renderer.format == "csv":
            name = f"usage-{self.org.slug}-{report.group_by}-{report.since:%Y%m%d%H}-{report.until:%Y%m%d%H}.csv"
            response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:
            # DRF answers an unknown ?format= with 404; it is bad input.
            raise ValidationError({"format": "must be json or csv."}) from None

    def handle_exception(self, exc: Exception) -> Response:
        # Errors are JSON whatever format was asked for: the one error contract.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = "application/json"
        return super().handle_exception(exc)
