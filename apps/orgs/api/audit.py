"""Admin API: the org's audit events (owner, admin). The log itself is apps.audit's."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.audit.models import AuditEvent
from apps.audit.selectors import org_audit_events
from apps.orgs.models import Role
from apps.orgs.permissions import OrgScopedAPIView
from pendra_console.api.pagination import paginate, paginated
from pendra_console.api.serializers import StrictInputSerializer, error_responses


class AuditEventListView(OrgScopedAPIView):
    scope_map = {"GET": Role.ADMIN}

    class FilterSerializer(StrictInputSerializer):
        actor = serializers.IntegerField(required=False, help_text="The acting user's id.")
        event_type = serializers.ChoiceField(choices=AuditEvent.Type.choices, required=False)
        since = serializers.DateTimeField(required=False)
        until = serializers.DateTimeField(required=False)
        page = serializers.IntegerField(required=False, min_value=1)
        page_size = serializers.IntegerField(required=False, min_value=1)

        class Meta:
            ref_name = "AuditEventFilter"

    class OutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        id = serializers.IntegerField()
        event_type = serializers.ChoiceField(choices=AuditEvent.Type.choices)
        actor_id = serializers.IntegerField(allow_null=True)
        actor = serializers.EmailField(source="actor.email", allow_null=True, default=None)
        target_type = serializers.CharField()
        target_id = serializers.CharField()
        data = serializers.DictField()  # type: ignore[assignment]  # the event's field, not Serializer.data
        request_id = serializers.CharField()
        created_at = serializers.DateTimeField()

        class Meta:
            ref_name = "AuditEvent"

    @extend_schema(
        tags=["audit"],
        operation_id="orgs_audit_events_list",
        summary="Audit events, newest first (owner, admin)",
        parameters=[
            OpenApiParameter("actor", int, description="The acting user's id."),
            OpenApiParameter("event_type", str, enum=AuditEvent.Type.values),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="ISO 8601; inclusive."),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="ISO 8601; exclusive."),
        ],
        responses={200: paginated(OutputSerializer, "AuditEvent"), **error_responses(400, 403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        params = filters.validated_data
        events = org_audit_events(
            org=self.org,
            actor_id=params.get("actor"),
            event_type=params.get("event_type"),
            since=params.get("since"),
            until=params.get("until"),
        )
        return paginate(request=request, view=self, queryset=events, serializer_class=self.OutputSerializer)
