"""Admin API: the caller, organisations, members, invitations, audit events.

Views are thin: parse with the nested InputSerializer, call one service or selector,
shape with the OutputSerializer. Org-scoped views inherit the role check from
:class:`apps.orgs.permissions.OrgScopedAPIView` and declare ``scope_map``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.keys.authentication import request_api_key
from apps.orgs import selectors, services
from apps.orgs.api_common import StrictInputSerializer, error_responses, paginate, paginated
from apps.orgs.exceptions import NotFound, ValidationError
from apps.orgs.models import AuditEvent, Invitation, Membership, Organisation, PlatformRole, Role
from apps.orgs.permissions import OrgScopedAPIView
from apps.orgs.platform import has_platform_role

User = get_user_model()
ORGS = ["organisations"]
MEMBERS = ["members"]
INVITATIONS = ["invitations"]


def _plan_slug(org: Organisation) -> str | None:
    subscription = getattr(org, "subscription", None)
    return subscription.plan.slug if subscription is not None else None


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    class MembershipSerializer(serializers.Serializer):
        org = serializers.CharField(source="org.slug")
        name = serializers.CharField(source="org.name")
        role = serializers.ChoiceField(choices=Role.choices)

        class Meta:
            ref_name = "MeMembership"

    class KeySerializer(serializers.Serializer):
        id = serializers.IntegerField()
        prefix = serializers.CharField()
        name = serializers.CharField()
        org = serializers.CharField(source="org.slug", allow_null=True, default=None)

        class Meta:
            ref_name = "MeKey"

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        email = serializers.EmailField()
        platform_roles = serializers.ListField(child=serializers.ChoiceField(choices=PlatformRole.choices))
        memberships = serializers.ListField(child=serializers.DictField())
        api_key = serializers.DictField(allow_null=True, help_text="The key this request used, or null.")

        class Meta:
            ref_name = "Me"

    @extend_schema(tags=["me"], summary="Who am I", responses={200: OutputSerializer, **error_responses()})
    def get(self, request: Request) -> Response:
        user = request.user
        key = request_api_key(request)
        data = {
            "id": user.pk,
            "email": user.email,
            "platform_roles": [role.value for role in PlatformRole if has_platform_role(user, role)],
            "memberships": self.MembershipSerializer(selectors.memberships_of(user=user), many=True).data,
            "api_key": self.KeySerializer(key).data if key is not None else None,
        }
        return Response(data)


class OrgOutputSerializer(serializers.Serializer):
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

    class InputSerializer(StrictInputSerializer):
        name = serializers.CharField(max_length=100)
        slug = serializers.SlugField(max_length=50, required=False)

        class Meta:
            ref_name = "OrganisationCreate"

    class ListItemSerializer(serializers.Serializer):
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
        key = request_api_key(request)
        if key is not None and key.org_id is not None:
            memberships = memberships.filter(org_id=key.org_id)
        return paginate(request=request, view=self, queryset=memberships, serializer_class=self.ListItemSerializer)

    @extend_schema(
        tags=ORGS,
        summary="Create an organisation; you become its owner",
        request=InputSerializer,
        responses={201: OrgOutputSerializer, **error_responses(400)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        org = services.org_create(owner=request.user, **data.validated_data)
        membership = Membership.objects.select_related("org").get(org=org, user=request.user)
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


class MemberOutputSerializer(serializers.Serializer):
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


class InvitationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)
    status = serializers.SerializerMethodField()
    invited_by = serializers.EmailField(source="invited_by.email", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField(allow_null=True)

    class Meta:
        ref_name = "Invitation"

    def get_status(self, invitation: Invitation) -> str:
        return invitation.status


class InvitationCreatedSerializer(InvitationOutputSerializer):
    token = serializers.CharField(help_text="Shown once: the invitee accepts with it.")

    class Meta:
        ref_name = "InvitationCreated"


class InvitationListView(OrgScopedAPIView):
    scope_map = {"GET": Role.OWNER, "POST": Role.OWNER}

    class InputSerializer(StrictInputSerializer):
        email = serializers.EmailField()
        role = serializers.ChoiceField(choices=Role.choices)

        class Meta:
            ref_name = "InvitationCreate"

    @extend_schema(
        tags=INVITATIONS,
        operation_id="orgs_invitations_list",
        summary="Invitations (owner)",
        responses={200: paginated(InvitationOutputSerializer, "Invitation"), **error_responses(403, 404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        invitations = selectors.org_invitations(org=self.org)
        return paginate(request=request, view=self, queryset=invitations, serializer_class=InvitationOutputSerializer)

    @extend_schema(
        tags=INVITATIONS,
        summary="Invite someone by email with a role (owner); the token is returned once",
        request=InputSerializer,
        responses={201: InvitationCreatedSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invitation, token = services.invitation_create(org=self.org, actor=request.user, **data.validated_data)
        body = dict(InvitationOutputSerializer(invitation).data, token=token)
        return Response(body, status=status.HTTP_201_CREATED)


class InvitationDetailView(OrgScopedAPIView):
    scope_map = {"DELETE": Role.OWNER}

    @extend_schema(
        tags=INVITATIONS,
        summary="Withdraw an invitation (owner)",
        responses={204: None, **error_responses(403, 404, 410)},
    )
    def delete(self, request: Request, slug: str, invitation_id: int) -> Response:
        invitation = selectors.org_invitation(org=self.org, invitation_id=invitation_id)
        if invitation is None:
            raise NotFound("No such invitation in this organisation.")
        services.invitation_revoke(invitation=invitation, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationAcceptView(APIView):
    permission_classes = [IsAuthenticated]

    class InputSerializer(StrictInputSerializer):
        token = serializers.CharField(max_length=200)

        class Meta:
            ref_name = "InvitationAccept"

    class OutputSerializer(serializers.Serializer):
        org = serializers.SlugField(source="org.slug")
        role = serializers.ChoiceField(choices=Role.choices)

        class Meta:
            ref_name = "InvitationAccepted"

    @extend_schema(
        tags=INVITATIONS,
        summary="Accept an invitation addressed to your email",
        request=InputSerializer,
        responses={201: OutputSerializer, **error_responses(400, 404, 410)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.invitation_accept(token=data.validated_data["token"], user=request.user)
        return Response(self.OutputSerializer(membership).data, status=status.HTTP_201_CREATED)


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

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        event_type = serializers.ChoiceField(choices=AuditEvent.Type.choices)
        actor_id = serializers.IntegerField(allow_null=True)
        actor = serializers.EmailField(source="actor.email", allow_null=True, default=None)
        target_type = serializers.CharField()
        target_id = serializers.CharField()
        data = serializers.DictField()
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
        events = selectors.org_audit_events(
            org=self.org,
            actor_id=params.get("actor"),
            event_type=params.get("event_type"),
            since=params.get("since"),
            until=params.get("until"),
        )
        return paginate(request=request, view=self, queryset=events, serializer_class=self.OutputSerializer)
