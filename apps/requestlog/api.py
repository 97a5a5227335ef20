"""Request lookup and usage: org members see their org's records, support staff any request by id."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.orgs.models import Role
from apps.orgs.permissions import IsSupportOrOperator, OrgScopedAPIView
from apps.requestlog import selectors
from apps.requestlog.explanations import explain_records
from apps.requestlog.services import support_lookup
from pendra_console.api.serializers import error_responses
from pendra_console.request_id import REQUEST_ID_SHAPE, is_request_id

TAGS = ["requests and usage"]
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


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


class FactSerializer(serializers.Serializer):
    topic = serializers.CharField()
    text = serializers.CharField()


class LimitSerializer(serializers.Serializer):
    bucket = serializers.CharField(source="limit_bucket")
    plan = serializers.CharField(source="limit_plan")
    limit = serializers.CharField()
    reset_s = serializers.IntegerField(source="limit_reset_s", allow_null=True)


class TimeoutSerializer(serializers.Serializer):
    name = serializers.CharField(source="timeout")
    seconds = serializers.FloatField(source="timeout_s", allow_null=True)


class TrailEntrySerializer(serializers.Serializer):
    worker_id = serializers.CharField(required=False)
    worker = serializers.CharField(required=False)
    result = serializers.CharField(required=False)


class BilledSerializer(serializers.Serializer):
    model = serializers.CharField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    units = serializers.IntegerField()


class ExplainedRecordSerializer(serializers.Serializer):
    """One record with its explanation: the facts in plain language, and the same facts as data."""

    record = RecordOutputSerializer()
    org = serializers.SerializerMethodField()
    org_name = serializers.SerializerMethodField()
    key_public_id = serializers.CharField(source="record.key_public_id")
    limit = serializers.SerializerMethodField()
    timeout = serializers.SerializerMethodField()
    worker_trail = TrailEntrySerializer(source="record.worker_trail", many=True)
    billed = BilledSerializer(source="usage", allow_null=True)
    summary = serializers.CharField()
    facts = FactSerializer(many=True)

    def get_org(self, explanation: Any) -> str | None:
        return explanation.org.slug if explanation.org is not None else None

    def get_org_name(self, explanation: Any) -> str | None:
        return explanation.org.name if explanation.org is not None else None

    @extend_schema_field(LimitSerializer(allow_null=True))
    def get_limit(self, explanation: Any) -> dict[str, Any] | None:
        return LimitSerializer(explanation.record).data if explanation.record.limit_bucket else None

    @extend_schema_field(TimeoutSerializer(allow_null=True))
    def get_timeout(self, explanation: Any) -> dict[str, Any] | None:
        return TimeoutSerializer(explanation.record).data if explanation.record.timeout else None

    def to_representation(self, instance: Any) -> dict[str, Any]:
        # The record's own fields at the top level, beside the explanation.
        data = dict(super().to_representation(instance))
        return {**data.pop("record"), **data}


class SupportExplainedRecordSerializer(ExplainedRecordSerializer):
    user_email = serializers.SerializerMethodField()

    def get_user_email(self, explanation: Any) -> str | None:
        key = explanation.key
        record = explanation.record
        user = record.user if record.user_id else (key.user if key is not None else None)
        return user.email if user is not None else None


def _checked_request_id(request_id: str) -> str:
    if not is_request_id(request_id):
        raise ValidationError({"request_id": f"not a request id: a request id is {REQUEST_ID_SHAPE}."})
    return request_id


class RecordFilterSerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    status = serializers.IntegerField(required=False, min_value=100, max_value=599)
    status_class = serializers.ChoiceField(choices=sorted(selectors.STATUS_CLASSES), required=False)
    model = serializers.CharField(required=False, max_length=200)
    route = serializers.CharField(required=False, max_length=200)
    key = serializers.CharField(required=False, max_length=40, help_text="An API key's public id.")
    worker = serializers.CharField(required=False, max_length=100, help_text="A worker's name (X-Worker-Name).")
    cursor = serializers.CharField(required=False, max_length=500, help_text="`next_cursor` of the previous page.")
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=PAGE_SIZE)


def _query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class RecordPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next (older) page, or null on the last page.")
    next_cursor = serializers.CharField(allow_null=True)
    results = RecordOutputSerializer(many=True)

    class Meta:
        ref_name = "RequestRecordPage"


class OrgRequestListView(OrgScopedAPIView):
    """Newest first, a page at a time by an opaque cursor (never an offset: page 1,000 costs what page 1 does)."""

    scope_map = {"GET": Role.MEMBER}

    @extend_schema(
        tags=TAGS,
        summary="The org's request log (members: their own keys' requests)",
        parameters=[RecordFilterSerializer],
        responses={200: RecordPageSerializer, **error_responses(400, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        query = _query(RecordFilterSerializer, request)
        cursor, page_size = query.pop("cursor", None), query.pop("page_size")
        filters = selectors.request_filters_for(role=self.role, user=request.user, **query)
        page = selectors.org_requests(self.org, filters=filters, cursor=cursor, limit=page_size)
        next_url = None
        if page.next_cursor is not None:
            params = request.query_params.copy()
            params["cursor"] = page.next_cursor
            next_url = request.build_absolute_uri(f"{request.path}?{params.urlencode()}")
        payload = {"next": next_url, "next_cursor": page.next_cursor, "results": page.records}
        return Response(RecordPageSerializer(payload).data)


class OrgRequestDetailView(OrgScopedAPIView):
    scope_map = {"GET": Role.MEMBER}

    @extend_schema(
        tags=TAGS,
        summary="One of the org's requests by its X-Request-Id, explained (members: their own keys' requests)",
        responses={200: ExplainedRecordSerializer(many=True), **error_responses(400, 403, 404)},
    )
    def get(self, request: Request, slug: str, request_id: str) -> Response:
        records = selectors.org_records_by_request_id(
            org=self.org, role=self.role, user=request.user, request_id=_checked_request_id(request_id)
        )
        if not records:
            raise NotFound(f"No request {request_id} in this organisation.")
        return Response(ExplainedRecordSerializer(explain_records(records), many=True).data)


class RequestLookupView(APIView):
    """Support staff paste the X-Request-Id from a ticket. Read-only, and every lookup is audited."""

    permission_classes = [IsAuthenticated, IsSupportOrOperator]

    @extend_schema(
        tags=TAGS,
        summary="Look up any request by X-Request-Id, explained, every org's match (support staff and operators)",
        parameters=[OpenApiParameter("request_id", str, OpenApiParameter.PATH)],
        responses={200: SupportExplainedRecordSerializer(many=True), **error_responses(400, 403, 404)},
    )
    def get(self, request: Request, request_id: str) -> Response:
        explained = support_lookup(actor=request.user, request_id=_checked_request_id(request_id))
        if not explained:
            raise NotFound(f"No request with id {request_id}.")
        return Response(SupportExplainedRecordSerializer(explained, many=True).data)
