"""Admin API: the plan catalogue and an organisation's plan.

``GET /plans/`` for anyone signed in (operators also see private plans), ``PATCH
/plans/<slug>/`` for operators, ``GET, PUT /orgs/<slug>/plan/`` for the org's members
to read and its owner to change.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.orgs.models import Role
from apps.orgs.permissions import IsOperator, OrgScopedAPIView
from apps.orgs.platform import is_operator
from apps.plans import selectors, services
from apps.plans.models import Plan
from pendra_console.api.exceptions import NotFound, ValidationError
from pendra_console.api.pagination import paginate, paginated
from pendra_console.api.serializers import StrictInputSerializer, error_responses

PLANS = ["plans"]
PLAN_NOT_FOUND = "Plan not found."


class PlanOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Plan
        fields = ["slug", "name", "monthly_price_cents", "is_public", "sort_order", *selectors.LIMIT_FIELDS]
        read_only_fields = fields
        ref_name = "Plan"


class PlanListView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=PLANS,
        operation_id="plans_list",
        summary="The plan catalogue (operators also see private plans)",
        responses={200: paginated(PlanOutputSerializer, "Plan"), **error_responses()},
    )
    def get(self, request: Request) -> Response:
        plans = selectors.plan_list(include_private=is_operator(request.user))
        return paginate(request=request, view=self, queryset=plans, serializer_class=PlanOutputSerializer)


class PlanDetailView(APIView):
    def get_permissions(self) -> list[object]:
        if self.request.method == "PATCH":
            return [IsAuthenticated(), IsOperator()]
        return [IsAuthenticated()]

    class InputSerializer(StrictInputSerializer):
        name = serializers.CharField(max_length=60, required=False)
        monthly_price_cents = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
        sort_order = serializers.IntegerField(min_value=0, max_value=32767, required=False)
        is_public = serializers.BooleanField(required=False)
        chat_rpm = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
        embeddings_rpm = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
        images_rpm = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
        audio_rpm = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
        api_rpm = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False)
        chat_tpm = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
        embeddings_tpm = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
        concurrent_streams = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
        max_keys = serializers.IntegerField(
            min_value=0, max_value=2**31 - 1, required=False, allow_null=True, help_text="null: unlimited"
        )
        max_members = serializers.IntegerField(
            min_value=1, max_value=2**31 - 1, required=False, allow_null=True, help_text="null: unlimited"
        )

        class Meta:
            ref_name = "PlanUpdate"

    def _plan(self, request: Request, slug: str) -> Plan:
        plan = selectors.plan_by_slug(slug, include_private=is_operator(request.user))
        if plan is None:
            raise NotFound(PLAN_NOT_FOUND)
        return plan

    @extend_schema(tags=PLANS, summary="One plan", responses={200: PlanOutputSerializer, **error_responses(404)})
    def get(self, request: Request, slug: str) -> Response:
        return Response(PlanOutputSerializer(self._plan(request, slug)).data)

    @extend_schema(
        tags=PLANS,
        summary="Edit a plan's price or limits (operators); applies to every org on it from its next request",
        request=InputSerializer,
        responses={200: PlanOutputSerializer, **error_responses(400, 403, 404)},
    )
    def patch(self, request: Request, slug: str) -> Response:
        plan = self._plan(request, slug)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        plan = services.plan_update(plan=plan, actor=request.user, **data.validated_data)
        return Response(PlanOutputSerializer(plan).data)


class OrgPlanView(OrgScopedAPIView):
    scope_map = {"GET": Role.MEMBER, "PUT": Role.OWNER}

    class InputSerializer(StrictInputSerializer):
        plan = serializers.SlugField(max_length=30, help_text="The slug of a public plan, e.g. pro.")

        class Meta:
            ref_name = "OrgPlanChange"

    class OutputSerializer(serializers.Serializer):
        plan = PlanOutputSerializer()
        since = serializers.DateTimeField()

        class Meta:
            ref_name = "OrgPlan"

    def _data(self) -> dict[str, object]:
        subscription = selectors.subscription_for_org(self.org.pk)
        return self.OutputSerializer({"plan": subscription.plan, "since": subscription.since}).data

    @extend_schema(
        tags=PLANS,
        operation_id="org_plan_retrieve",
        summary="The organisation's plan and its limits (members)",
        responses={200: OutputSerializer, **error_responses(404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        return Response(self._data())

    @extend_schema(
        tags=PLANS,
        operation_id="org_plan_change",
        summary="Change the organisation's plan (owner); the new limits apply from the next request",
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 403, 404)},
    )
    def put(self, request: Request, slug: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        plan = selectors.plan_by_slug(data.validated_data["plan"], include_private=False)
        if plan is None:
            choices = ", ".join(selectors.plan_list(include_private=False).values_list("slug", flat=True))
            raise ValidationError({"plan": f"Unknown plan {data.validated_data['plan']!r}; choose one of: {choices}."})
        services.subscription_change(org=self.org, plan=plan, actor=request.user)
        return Response(self._data())
