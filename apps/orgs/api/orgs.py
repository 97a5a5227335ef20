"""Admin API: organisations you belong to, create, rename, delete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.orgs import selectors, services
from apps.orgs.credentials import org_credential
from apps.orgs.models import Membership, Organisation, Role
from apps.orgs.permissions import NotAnOrgKey, OrgScopedAPIView
from pendra_console.api.pagination import paginate, paginated
from pendra_console.api.serializers import StrictInputSerializer, error_responses

ORGS = ["organisations"]


def _plan_slug(org: Organisation) -> str | None:
    subscription = getattr(org, "subscription", None)
    return subscription.plan.slug if subscription is not None else None


class OrgOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    slug = serializers.SlugField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices, help_text="Your role in this organisation.")
    plan = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Organisation"


def _org_data(membership: Membership) -> dict[str, Any]:
    org = membership.org
    return OrgOutputSerializer(
        {
            "slug": org.slug,
            "name": org.name,
            "role": membership.role,
            "plan": _plan_slug(org),
            "created_at": org.created_at,
        }
    ).data


class OrgListView(APIView):
    permission_classes = [IsAuthenticated]

    def get_permissions(self) -> Sequence[Any]:
        if self.request.method == "POST":  # a new org is its user's act, not one org's key's
            return [IsAuthenticated(), NotAnOrgKey()]
        return super().get_permissions()

    class InputSerializer(StrictInputSerializer):
        name = serializers.CharField(max_length=100)
        slug = serializers.SlugField(max_length=50, required=False)

        class Meta:
            ref_name = "OrganisationCreate"

    class ListItemSerializer(serializers.Serializer):  # type: ignore[type-arg]
        slug = serializers.SlugField(source="org.slug")
        name = serializers.CharField(source="org.name")
        role = serializers.ChoiceField(choices=Role.choices)
        created_at = serializers.DateTimeField(source="org.created_at")

        class Meta:
            ref_name = "OrganisationListItem"

    @extend_schema(
        tags=ORGS,
        operation_id="orgs_list",
        summary="Organisations you belong to (a key sees only its own)",
        responses={200: paginated(ListItemSerializer, "Organisation"), **error_responses(404)},
    )
    def get(self, request: Request) -> Response:
        memberships = selectors.memberships_of(user=request.user)
        credential = org_credential(request)
        if credential is not None:
            memberships = memberships.filter(org_id=credential.org_id)
        return paginate(request=request, view=self, queryset=memberships, serializer_class=self.ListItemSerializer)

    @extend_schema(
        tags=ORGS,
        summary="Create an organisation; you become its owner (not with an organisation's API key)",
        request=InputSerializer,
        responses={201: OrgOutputSerializer, **error_responses(400, 403)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        org = services.org_create(owner=request.user, **data.validated_data)
        membership = selectors.membership_for(user=request.user, slug=org.slug)
        assert membership is not None  # the creator is its first owner
        return Response(_org_data(membership), status=status.HTTP_201_CREATED)


class OrgDetailView(OrgScopedAPIView):
    scope_map = {"GET": Role.MEMBER, "PATCH": Role.OWNER, "DELETE": Role.OWNER}

    class InputSerializer(StrictInputSerializer):
        name = serializers.CharField(max_length=100)

        class Meta:
            ref_name = "OrganisationUpdate"

    @extend_schema(tags=ORGS, summary="An organisation", responses={200: OrgOutputSerializer, **error_responses(404)})
    def get(self, request: Request, slug: str) -> Response:
        return Response(_org_data(self.membership))

    @extend_schema(
        tags=ORGS,
        summary="Rename (owner)",
        request=InputSerializer,
        responses={200: OrgOutputSerializer, **error_responses(400, 403, 404)},
    )
    def patch(self, request: Request, slug: str) -> Response:
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        services.org_update(org=self.org, actor=request.user, **data.validated_data)
        return Response(_org_data(self.membership))

    @extend_schema(
        tags=ORGS,
        summary="Delete, with its members and keys (owner)",
        responses={204: None, **error_responses(403, 404)},
    )
    def delete(self, request: Request, slug: str) -> Response:
        services.org_delete(org=self.org, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
