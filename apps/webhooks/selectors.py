"""Reads of webhooks, each scoped to the org it belongs to."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.orgs.models import Organisation
from apps.webhooks.models import Delivery, Endpoint


def org_endpoints(*, org: Organisation) -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(org=org)


def org_endpoint(*, org: Organisation, endpoint_id: str) -> Endpoint | None:
    return Endpoint.objects.filter(org=org, pk=endpoint_id).first()


def endpoint_deliveries(*, endpoint: Endpoint) -> QuerySet[Delivery]:
    return (
        Delivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related("attempt_log")
        .order_by("-created_at", "-id")
    )


def org_delivery(*, org: Organisation, delivery_id: str) -> Delivery | None:
    return Delivery.objects.filter(endpoint__org=org, pk=delivery_id).select_related("event", "endpoint").first()
