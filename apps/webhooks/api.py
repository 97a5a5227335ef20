"""Admin API for webhooks: endpoints (CRUD), their secret, their deliveries, re-send.

Owners and admins only (members get 403 naming the role). The signing secret is in the
create response and the reveal response, nowhere else.
"""

from __future__ import annotations

from uuid import UUID

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.orgs.models import Role
from apps.orgs.permissions import OrgScopedAPIView
from apps.webhooks import selectors, services
from apps.webhooks.models import DeliveryState, Endpoint, EventType
from pendra_console.api.exceptions import NotFound
from pendra_console.api.pagination import paginate, paginated
from pendra_console.api.serializers import StrictInputSerializer, error_responses

TAGS = ["webhooks"]
ADMIN_ONLY = {"GET": Role.ADMIN, "POST": Role.ADMIN, "PATCH": Role.ADMIN, "DELETE": Role.ADMIN}


class EndpointSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.URLField()
    description = serializers.CharField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=EventType.choices))
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "WebhookEndpoint"


class EndpointWithSecretSerializer(EndpointSerializer):
    secret = serializers.CharField(help_text="Signs every delivery (Pendra-Signature). Store it now.")

    class Meta:
        ref_name = "WebhookEndpointWithSecret"


class AttemptSerializer(serializers.Serializer):
    started_at = serializers.DateTimeField()
    duration_ms = serializers.FloatField()
    status_code = serializers.IntegerField(allow_null=True)
    response_snippet = serializers.CharField(help_text="The first 1000 bytes of the answer.")
    error = serializers.CharField(help_text="Why no answer came (timeout, refused address...), else empty.")

    class Meta:
        ref_name = "WebhookAttempt"


class DeliverySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    event_id = serializers.UUIDField(source="event.id")
    event_type = serializers.CharField(source="event.type")
    event_data = serializers.JSONField(source="event.data")
    state = serializers.ChoiceField(choices=DeliveryState.choices)
    attempts = serializers.IntegerField(help_text="Attempts in the current round (a re-send starts a new round).")
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    attempt_log = AttemptSerializer(many=True, help_text="Every attempt, newest first.")

    class Meta:
        ref_name = "WebhookDelivery"


class EndpointFields(StrictInputSerializer):
    url = serializers.CharField(max_length=500, help_text="https://, publicly routable (the workers' SSRF rules).")
    events = serializers.ListField(child=serializers.CharField(max_length=40), max_length=20)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)


class EndpointListView(OrgScopedAPIView):
    scope_map = ADMIN_ONLY

    class InputSerializer(EndpointFields):
        class Meta:
            ref_name = "WebhookEndpointCreate"

    @extend_schema(
        tags=TAGS,
        operation_id="orgs_webhooks_list",
        summary="Webhook endpoints of the organisation",
        responses={200: paginated(EndpointSerializer, "WebhookEndpoint"), **error_responses(403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        endpoints = selectors.org_endpoints(org=self.org)
        return paginate(request=request, view=self, queryset=endpoints, serializer_class=EndpointSerializer)

    @extend_schema(
        tags=TAGS,
        summary="Register an endpoint; its signing secret is returned once",
        request=InputSerializer,
        responses={201: EndpointWithSecretSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = services.endpoint_create(org=self.org, actor=request.user, **data.validated_data)
        return Response(EndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointObjectView(OrgScopedAPIView):
    scope_map = ADMIN_ONLY

    def endpoint(self, endpoint_id: UUID) -> Endpoint:
        endpoint = selectors.org_endpoint(org=self.org, endpoint_id=str(endpoint_id))
        if endpoint is None:
            raise NotFound("No such webhook endpoint in this organisation.")
        return endpoint


class EndpointDetailView(EndpointObjectView):
    class InputSerializer(EndpointFields):
        active = serializers.BooleanField(required=False)

        class Meta:
            ref_name = "WebhookEndpointUpdate"

    @extend_schema(tags=TAGS, summary="An endpoint", responses={200: EndpointSerializer, **error_responses(403, 404)})
    def get(self, request: Request, slug: str, endpoint_id: UUID) -> Response:
        return Response(EndpointSerializer(self.endpoint(endpoint_id)).data)

    @extend_schema(
        tags=TAGS,
        summary="Change the URL, events, description or pause it (active: false)",
        request=InputSerializer,
        responses={200: EndpointSerializer, **error_responses(400, 403, 404)},
    )
    def patch(self, request: Request, slug: str, endpoint_id: UUID) -> Response:
        endpoint = self.endpoint(endpoint_id)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        endpoint = services.endpoint_update(endpoint=endpoint, actor=request.user, **data.validated_data)
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(
        tags=TAGS, summary="Remove an endpoint and its deliveries", responses={204: None, **error_responses(403, 404)}
    )
    def delete(self, request: Request, slug: str, endpoint_id: UUID) -> Response:
        services.endpoint_delete(endpoint=self.endpoint(endpoint_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointSecretView(EndpointObjectView):
    @extend_schema(
        tags=TAGS,
        summary="Reveal the endpoint's signing secret (owners and admins)",
        request=None,
        responses={200: EndpointWithSecretSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, slug: str, endpoint_id: UUID) -> Response:
        endpoint = services.endpoint_secret_reveal(endpoint=self.endpoint(endpoint_id), actor=request.user)
        return Response(EndpointWithSecretSerializer(endpoint).data)


class DeliveryListView(EndpointObjectView):
    @extend_schema(
        tags=TAGS,
        summary="Deliveries to an endpoint, newest first, with every attempt",
        responses={200: paginated(DeliverySerializer, "WebhookDelivery"), **error_responses(403, 404)},
    )
    def get(self, request: Request, slug: str, endpoint_id: UUID) -> Response:
        deliveries = selectors.endpoint_deliveries(endpoint=self.endpoint(endpoint_id))
        return paginate(request=request, view=self, queryset=deliveries, serializer_class=DeliverySerializer)


class DeliveryResendView(EndpointObjectView):
    @extend_schema(
        tags=TAGS,
        summary="Send a delivery again now (a new round of attempts)",
        request=None,
        responses={202: DeliverySerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, slug: str, endpoint_id: UUID, delivery_id: UUID) -> Response:
        endpoint = self.endpoint(endpoint_id)
        delivery = selectors.org_delivery(org=self.org, delivery_id=str(delivery_id))
        if delivery is None or delivery.endpoint_id != endpoint.pk:
            raise NotFound("No such delivery for this endpoint.")
        delivery = services.delivery_resend(delivery=delivery, actor=request.user)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
