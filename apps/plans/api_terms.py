"""Admin API: an org's plan terms set by an operator, and each plan's prices.

- ``GET, PUT /subscriptions/<org slug>/`` (operators): put an org on any plan (a
  dedicated or private one included) and override any of its limits for that org alone.
- ``GET /plans/<slug>/prices/`` (anyone signed in who may see the plan), ``POST`` (operators:
  create or change the row of a kind and model pattern), ``DELETE
  /plans/<slug>/prices/<id>/`` (operators).

Every change is audited and reaches the gateway from the org's next request.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.orgs.models import Organisation
from apps.orgs.permissions import IsOperator
from apps.orgs.platform import is_operator
from apps.plans import selectors, services
from apps.plans.api import PLAN_NOT_FOUND, PLANS, PlanOutputSerializer
from apps.plans.models import Plan, Price
from pendra_console.api.exceptions import NotFound, ValidationError
from pendra_console.api.serializers import StrictInputSerializer, error_responses

MONEY = {"max_digits": 14, "decimal_places": 4, "min_value": 0, "coerce_to_string": True}


class SubscriptionOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    org = serializers.CharField(source="org.slug")
    plan = PlanOutputSerializer()
    since = serializers.DateTimeField()
    overrides = serializers.DictField(help_text="The org's own limits over the plan's (null: unlimited).")
    limits = serializers.DictField(help_text="What applies: the plan's limits with the overrides over them.")

    class Meta:
        ref_name = "OrgPlanTerms"


def _terms(org: Organisation) -> dict[str, Any]:
    subscription = selectors.subscription_for_org(org.pk)
    data = {
        "org": org,
        "plan": subscription.plan,
        "since": subscription.since,
        "overrides": subscription.overrides or {},
        "limits": selectors.effective_limits(subscription),
    }
    return dict(SubscriptionOutputSerializer(data).data)


class OrgPlanTermsView(APIView):
    permission_classes = [IsAuthenticated, IsOperator]

    class InputSerializer(StrictInputSerializer):
        plan = serializers.SlugField(max_length=30, required=False, help_text="Any plan's slug, e.g. dedicated.")
        overrides = serializers.DictField(
            required=False,
            help_text='Replaces the overrides: {"chat_rpm": 50000, "max_keys": null}; {} drops them all.',
        )

        class Meta:
            ref_name = "OrgPlanTermsChange"

    def _org(self, slug: str) -> Organisation:
        org = Organisation.objects.filter(slug=slug).first()
        if org is None:
            raise NotFound("Organisation not found.")
        return org

    @extend_schema(
        tags=PLANS,
        operation_id="org_plan_terms_retrieve",
        summary="An org's plan, overrides and the limits that apply (operators)",
        responses={200: SubscriptionOutputSerializer, **error_responses(403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(_terms(self._org(slug)))

    @extend_schema(
        tags=PLANS,
        operation_id="org_plan_terms_update",
        summary="Set an org's plan (any, e.g. dedicated) and per-org limit overrides (operators); applies at once",
        request=InputSerializer,
        responses={200: SubscriptionOutputSerializer, **error_responses(400, 403, 404)},
    )
    def put(self, request: Request, slug: str) -> Response:
        org = self._org(slug)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        plan = None
        if "plan" in data.validated_data:
            plan = selectors.plan_by_slug(data.validated_data["plan"], include_private=True)
            if plan is None:
                raise ValidationError({"plan": f"Unknown plan {data.validated_data['plan']!r}."})
        with transaction.atomic():  # a plan and its overrides land together or not at all
            if plan is not None:
                services.subscription_change(org=org, plan=plan, actor=request.user)
            if "overrides" in data.validated_data:
                services.overrides_set(org=org, overrides=data.validated_data["overrides"], actor=request.user)
        return Response(_terms(org))


class PriceOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Price
        fields = ["id", "kind", "model_pattern", "input_per_million", "output_per_million", "per_unit"]
        read_only_fields = fields
        ref_name = "Price"


def _plan(request: Request, slug: str) -> Plan:
    plan = selectors.plan_by_slug(slug, include_private=is_operator(request.user))
    if plan is None:
        raise NotFound(PLAN_NOT_FOUND)
    return plan


class PlanPricesView(APIView):
    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [IsAuthenticated(), IsOperator()]
        return [IsAuthenticated()]

    class InputSerializer(StrictInputSerializer):
        kind = serializers.ChoiceField(choices=Price.Kind.choices, required=False, default="")
        model_pattern = serializers.CharField(max_length=200, required=False, default="*")
        input_per_million = serializers.DecimalField(required=False, help_text="USD per million input tokens", **MONEY)
        output_per_million = serializers.DecimalField(
            required=False, help_text="USD per million output tokens", **MONEY
        )
        per_unit = serializers.DecimalField(required=False, help_text="USD per image, or per audio request", **MONEY)

        class Meta:
            ref_name = "PriceSet"

    @extend_schema(
        tags=PLANS,
        operation_id="plan_prices_list",
        summary="A plan's prices, most specific first wins (USD, per million tokens and per unit)",
        responses={200: PriceOutputSerializer(many=True), **error_responses(404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(PriceOutputSerializer(selectors.prices_of(_plan(request, slug)), many=True).data)

    @extend_schema(
        tags=PLANS,
        operation_id="plan_prices_set",
        summary="Create or change the price of a kind and model pattern (operators); applies from the next request",
        request=InputSerializer,
        responses={200: PriceOutputSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        plan = _plan(request, slug)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        kind, pattern = fields.pop("kind"), fields.pop("model_pattern").strip()
        if not pattern:
            raise ValidationError({"model_pattern": "A model name, a glob such as llama-*, or *."})
        price = services.price_set(plan=plan, kind=kind, model_pattern=pattern, actor=request.user, **fields)
        return Response(PriceOutputSerializer(price).data)


class PlanPriceDetailView(APIView):
    permission_classes = [IsAuthenticated, IsOperator]

    @extend_schema(
        tags=PLANS,
        operation_id="plan_prices_delete",
        summary="Remove a price row (operators)",
        responses={204: None, **error_responses(403, 404)},
    )
    def delete(self, request: Request, slug: str, price_id: int) -> Response:
        price = selectors.prices_of(_plan(request, slug)).filter(pk=price_id).first()
        if price is None:
            raise NotFound("Price not found.")
        services.price_delete(price=price, actor=request.user)
        return Response(status=204)
