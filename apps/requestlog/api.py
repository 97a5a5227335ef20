"""Request lookup and usage: org members see their org's records, support staff any request by id."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.models import AuditEvent
from apps.audit.services import Ref, audit
from apps.orgs.models import Role
from apps.orgs.permissions import IsSupportOrOperator, OrgScopedAPIView
from apps.requestlog import selectors
from pendra_console.api.pagination import paginate, paginated
from pendra_console.api.serializers import error_responses

TAGS = ["requests and usage"]
MAX_USAGE_RANGE = timedelta(days=366)


class RecordOutputSerializer(serializers.Serializer):
    request_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    route = serializers.CharField()
    method = serializers.CharField()
    model = serializers.CharField()
    status = serializers.IntegerField()
    key_prefix = serializers.SerializerMethodField()
    worker_id = serializers.UUIDField(allow_null=True)
    worker_name = serializers.CharField()
    attempts = serializers.IntegerField()
    streamed = serializers.BooleanField()
    latency_ms = serializers.FloatField()
    upstream_latency_ms = serializers.FloatField(allow_null=True)
    ttfb_ms = serializers.FloatField(allow_null=True)
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)
    total_tokens = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()

    def get_key_prefix(self, record: Any) -> str | None:
        return record.api_key.prefix if record.api_key_id and record.api_key else None


class SupportRecordOutputSerializer(RecordOutputSerializer):
    org = serializers.SerializerMethodField()
    user_email = serializers.SerializerMethodField()

    def get_org(self, record: Any) -> str | None:
        return record.org.slug if record.org_id and record.org else None

    def get_user_email(self, record: Any) -> str | None:
        return record.user.email if record.user_id and record.user else None


class RecordFilterSerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    status = serializers.IntegerField(required=False, min_value=100, max_value=599)
    model = serializers.CharField(required=False, max_length=200)
    route = serializers.CharField(required=False, max_length=200)


def _query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class OrgRequestListView(OrgScopedAPIView):
    scope_map = {"GET": Role.MEMBER}

    @extend_schema(
        tags=TAGS,
        summary="The org's request records (members: their own keys' requests)",
        parameters=[RecordFilterSerializer],
        responses={200: paginated(RecordOutputSerializer, "RequestRecord"), **error_responses(400, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        records = selectors.records_for_org(
            org=self.org, role=self.role, user=request.user, **_query(RecordFilterSerializer, request)
        )
        return paginate(request=request, view=self, queryset=records, serializer_class=RecordOutputSerializer)


class OrgRequestDetailView(OrgScopedAPIView):
    scope_map = {"GET": Role.MEMBER}

    @extend_schema(
        tags=TAGS,
        summary="One of the org's requests by its X-Request-Id",
        responses={200: RecordOutputSerializer(many=True), **error_responses(403, 404)},
    )
    def get(self, request: Request, slug: str, request_id: str) -> Response:
        records = selectors.records_for_org(org=self.org, role=self.role, user=request.user).filter(
            request_id=request_id
        )[:20]
        if not records:
            raise NotFound(f"No request {request_id} in this organisation.")
        return Response(RecordOutputSerializer(records, many=True).data)


class UsageQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    group_by = serializers.ChoiceField(choices=["day", "model"], default="day")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        until = attrs.get("until") or timezone.now()
        since = attrs.get("since") or until - timedelta(days=30)
        if since >= until:
            raise ValidationError({"since": "must be before until."})
        if until - since > MAX_USAGE_RANGE:
            raise ValidationError({"since": "the range may span at most 366 days."})
        return {**attrs, "since": since, "until": until}


class UsageRowSerializer(serializers.Serializer):
    day = serializers.DateTimeField(required=False)
    model = serializers.CharField(required=False)
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    units = serializers.IntegerField()


class UsageOutputSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    group_by = serializers.CharField()
    totals = UsageRowSerializer()
    rows = UsageRowSerializer(many=True)


class OrgUsageView(OrgScopedAPIView):
    scope_map = {"GET": Role.MEMBER}

    @extend_schema(
        tags=TAGS,
        summary="Billed usage (successful requests only), by day or by model",
        parameters=[UsageQuerySerializer],
        responses={200: UsageOutputSerializer, **error_responses(400, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        query = _query(UsageQuerySerializer, request)
        totals, rows = selectors.usage_summary(
            org=self.org, since=query["since"], until=query["until"], group_by=query["group_by"]
        )
        payload = {**query, "totals": totals, "rows": rows}
        return Response(UsageOutputSerializer(payload).data)


class RequestLookupView(APIView):
    """Support staff paste the X-Request-Id from a ticket. Read-only, and every lookup is audited."""

    permission_classes = [IsAuthenticated, IsSupportOrOperator]

    @extend_schema(
        tags=TAGS,
        summary="Look up any request by X-Request-Id (support staff and operators)",
        parameters=[OpenApiParameter("request_id", str, OpenApiParameter.PATH)],
        responses={200: SupportRecordOutputSerializer(many=True), **error_responses(403, 404)},
    )
    def get(self, request: Request, request_id: str) -> Response:
        records = selectors.records_by_request_id(request_id)
        found_in = sorted({r.org.slug for r in records if r.org_id and r.org})
        audit(
            request.user,
            AuditEvent.Type.REQUEST_LOOKED_UP,
            Ref("request", request_id[:64]),
            data={"found": len(records), "orgs": found_in},
        )
        if not records:
            raise NotFound(f"No request with id {request_id}.")
        return Response(SupportRecordOutputSerializer(records, many=True).data)
