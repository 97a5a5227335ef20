"""Admin API: the monthly budget of an organisation and of each of its keys.

``GET /orgs/<slug>/budget/`` and ``GET /orgs/<slug>/keys/<id>/budget/`` for members;
``PUT`` and ``DELETE`` for owners and admins. ``hard: true`` refuses requests (429,
bucket ``budget``) once the month's spend reaches it; ``hard: false`` only alerts at 50,
80 and 100 %. The response also says what was spent this month.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.cache import cache
from drf_spectacular.utils import extend_schema
from redis.exceptions import RedisError
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.orgs.models import Role
from apps.orgs.permissions import OrgScopedAPIView
from apps.plans import budgets
from apps.plans.limit_decision import spend_keys
from apps.plans.models import Budget
from apps.plans.pricing import period_of, usd_of_units
from pendra_console.api.exceptions import NotFound
from pendra_console.api.serializers import StrictInputSerializer, error_responses

BUDGETS = ["budgets"]
NO_BUDGET = "No budget is set."


class BudgetOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    monthly_usd = serializers.DecimalField(max_digits=14, decimal_places=4, allow_null=True)
    hard = serializers.BooleanField()
    period = serializers.CharField(help_text="The budget month, UTC: YYYY-MM.")
    spent_usd = serializers.DecimalField(
        max_digits=20, decimal_places=10, allow_null=True, help_text="This month's spend; null if unknown now."
    )

    class Meta:
        ref_name = "Budget"


class BudgetInputSerializer(StrictInputSerializer):
    monthly_usd = serializers.DecimalField(max_digits=14, decimal_places=4, min_value=Decimal("0.0001"))
    hard = serializers.BooleanField(
        required=False, default=False, help_text="true: refuse requests once spent; false: alert only."
    )

    class Meta:
        ref_name = "BudgetSet"


def _spent(org_id: int, key_id: int | None) -> Decimal | None:
    """This month's spend from the counters the gateway adds to (None when the cache is unreachable)."""
    org_counter, key_counter = spend_keys(org_id, key_id)
    try:
        return usd_of_units(int(cache.get(key_counter if key_id is not None else org_counter, 0)))
    except (RedisError, OSError):  # an unreachable cache: the answer says unknown, not 0
        return None


def _answer(budget: Budget | None, org_id: int, key_id: int | None) -> dict[str, Any]:
    data = {
        "monthly_usd": budget.monthly_usd if budget else None,
        "hard": budget.hard if budget else False,
        "period": period_of(),
        "spent_usd": _spent(org_id, key_id),
    }
    return dict(BudgetOutputSerializer(data).data)


class _BudgetView(OrgScopedAPIView):
    scope_map = {"GET": Role.MEMBER, "PUT": Role.ADMIN, "DELETE": Role.ADMIN}

    def key_id(self, kwargs: dict[str, Any]) -> int | None:
        return None

    def _get(self, kwargs: dict[str, Any]) -> Response:
        key_id = self.key_id(kwargs)
        return Response(_answer(budgets.budget_of(org=self.org, key_id=key_id), self.org.pk, key_id))

    def _put(self, request: Request, kwargs: dict[str, Any]) -> Response:
        key_id = self.key_id(kwargs)
        data = BudgetInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        budget = budgets.budget_set(org=self.org, key_id=key_id, actor=request.user, **data.validated_data)
        return Response(_answer(budget, self.org.pk, key_id))

    def _delete(self, request: Request, kwargs: dict[str, Any]) -> Response:
        budget = budgets.budget_of(org=self.org, key_id=self.key_id(kwargs))
        if budget is None:
            raise NotFound(NO_BUDGET)
        budgets.budget_delete(budget=budget, actor=request.user)
        return Response(status=204)


class OrgBudgetView(_BudgetView):
    @extend_schema(
        tags=BUDGETS,
        operation_id="org_budget_retrieve",
        summary="The org's monthly budget and this month's spend (members)",
        responses={200: BudgetOutputSerializer, **error_responses(404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        return self._get({})

    @extend_schema(
        tags=BUDGETS,
        operation_id="org_budget_set",
        summary="Set the org's monthly budget (owners, admins); hard refuses once spent, soft only alerts",
        request=BudgetInputSerializer,
        responses={200: BudgetOutputSerializer, **error_responses(400, 403, 404)},
    )
    def put(self, request: Request, slug: str) -> Response:
        return self._put(request, {})

    @extend_schema(
        tags=BUDGETS,
        operation_id="org_budget_delete",
        summary="Remove the org's budget (owners, admins)",
        responses={204: None, **error_responses(403, 404)},
    )
    def delete(self, request: Request, slug: str) -> Response:
        return self._delete(request, {})


class KeyBudgetView(_BudgetView):
    def key_id(self, kwargs: dict[str, Any]) -> int | None:
        key = budgets.key_of_org(org=self.org, key_id=kwargs["key_id"])
        if key is None:
            raise NotFound("API key not found.")
        return int(key.pk)

    @extend_schema(
        tags=BUDGETS,
        operation_id="key_budget_retrieve",
        summary="A key's monthly budget and its spend this month (members)",
        responses={200: BudgetOutputSerializer, **error_responses(404)},
    )
    def get(self, request: Request, slug: str, key_id: int) -> Response:
        return self._get({"key_id": key_id})

    @extend_schema(
        tags=BUDGETS,
        operation_id="key_budget_set",
        summary="Set a key's monthly budget (owners, admins); hard refuses its requests once spent",
        request=BudgetInputSerializer,
        responses={200: BudgetOutputSerializer, **error_responses(400, 403, 404)},
    )
    def put(self, request: Request, slug: str, key_id: int) -> Response:
        return self._put(request, {"key_id": key_id})

    @extend_schema(
        tags=BUDGETS,
        operation_id="key_budget_delete",
        summary="Remove a key's budget (owners, admins)",
        responses={204: None, **error_responses(403, 404)},
    )
    def delete(self, request: Request, slug: str, key_id: int) -> Response:
        return self._delete(request, {"key_id": key_id})
