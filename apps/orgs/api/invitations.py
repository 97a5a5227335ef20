"""Admin API: invitations (owner), and accepting one (the invitee)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.orgs import invitations, selectors
from apps.orgs.models import Invitation, Role
from apps.orgs.permissions import NotAnOrgKey, OrgScopedAPIView
from pendra_console.api.exceptions import NotFound
from pendra_console.api.pagination import paginate, paginated
from pendra_console.api.serializers import StrictInputSerializer, error_responses

INVITATIONS = ["invitations"]


class InvitationOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
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
        invitation, token = invitations.invitation_create(org=self.org, actor=request.user, **data.validated_data)
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
        invitations.invitation_revoke(invitation=invitation, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationAcceptView(APIView):
    permission_classes = [IsAuthenticated, NotAnOrgKey]  # joining an org is its user's act, not one org's key's

    class InputSerializer(StrictInputSerializer):
        token = serializers.CharField(max_length=200)

        class Meta:
            ref_name = "InvitationAccept"

    class OutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        org = serializers.SlugField(source="org.slug")
        role = serializers.ChoiceField(choices=Role.choices)

        class Meta:
            ref_name = "InvitationAccepted"

    @extend_schema(
        tags=INVITATIONS,
        summary="Accept an invitation addressed to your email (not with an organisation's API key)",
        request=InputSerializer,
        responses={201: OutputSerializer, **error_responses(400, 403, 404, 410)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = invitations.invitation_accept(token=data.validated_data["token"], user=request.user)
        return Response(self.OutputSerializer(membership).data, status=status.HTTP_201_CREATED)
