"""Admin API: members and their roles, ownership transfer."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.orgs import selectors, services
from apps.orgs.models import Membership, Role
from apps.orgs.permissions import OrgScopedAPIView
from pendra_console.api.exceptions import NotFound, ValidationError
from pendra_console.api.pagination import paginate, paginated
from pendra_console.api.serializers import StrictInputSerializer, error_responses

User = get_user_model()
MEMBERS = ["members"]


class MemberOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField(help_text="The membership id used in member URLs.")
    user_id = serializers.IntegerField()
    email = serializers.EmailField(source="user.email")
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Member"


class MemberListView(OrgScopedAPIView):
    scope_map = {"GET": Role.MEMBER, "POST": Role.OWNER}

    class InputSerializer(StrictInputSerializer):
        email = serializers.EmailField()
        role = serializers.ChoiceField(choices=Role.choices)

        class Meta:
            ref_name = "MemberAdd"

    @extend_schema(
        tags=MEMBERS,
        operation_id="orgs_members_list",
        summary="Members and their roles",
        responses={200: paginated(MemberOutputSerializer, "Member"), **error_responses(404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        members = selectors.org_members(org=self.org)
        return paginate(request=request, view=self, queryset=members, serializer_class=MemberOutputSerializer)

    @extend_schema(
        tags=MEMBERS,
        summary="Add an existing user by email (owner); invite anyone else",
        request=InputSerializer,
        responses={201: MemberOutputSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = User.objects.filter(email__iexact=data.validated_data["email"], is_active=True).first()
        if user is None:
            raise ValidationError({"email": "No user has this email; send an invitation instead."})
        membership = services.membership_add(
            org=self.org, user=user, role=data.validated_data["role"], actor=request.user
        )
        return Response(MemberOutputSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailView(OrgScopedAPIView):
    scope_map = {"PATCH": Role.OWNER, "DELETE": Role.OWNER}

    class InputSerializer(StrictInputSerializer):
        role = serializers.ChoiceField(choices=Role.choices)

        class Meta:
            ref_name = "MemberUpdate"

    def _member(self, member_id: int) -> Membership:
        membership = selectors.org_member(org=self.org, membership_id=member_id)
        if membership is None:
            raise NotFound("No such member in this organisation.")
        return membership

    @extend_schema(
        tags=MEMBERS,
        summary="Change a member's role (owner)",
        request=InputSerializer,
        responses={200: MemberOutputSerializer, **error_responses(400, 403, 404)},
    )
    def patch(self, request: Request, slug: str, member_id: int) -> Response:
        membership = self._member(member_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_change_role(
            membership=membership, role=data.validated_data["role"], actor=request.user
        )
        return Response(MemberOutputSerializer(membership).data)

    @extend_schema(
        tags=MEMBERS,
        summary="Remove a member and revoke their keys in this organisation (owner)",
        responses={204: None, **error_responses(400, 403, 404)},
    )
    def delete(self, request: Request, slug: str, member_id: int) -> Response:
        services.membership_remove(membership=self._member(member_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TransferOwnershipView(OrgScopedAPIView):
    scope_map = {"POST": Role.OWNER}

    class InputSerializer(StrictInputSerializer):
        member_id = serializers.IntegerField(help_text="The membership id of the new owner.")

        class Meta:
            ref_name = "OwnershipTransfer"

    @extend_schema(
        tags=MEMBERS,
        summary="Make another member the owner; you become an admin (owner)",
        request=InputSerializer,
        responses={200: MemberOutputSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        target = selectors.org_member(org=self.org, membership_id=data.validated_data["member_id"])
        if target is None:
            raise NotFound("No such member in this organisation.")
        membership = services.ownership_transfer(org=self.org, actor=request.user, to_membership=target)
        return Response(MemberOutputSerializer(membership).data)
