"""Admin API for API keys: list, create, read, update, revoke, rotate, reveal.

Everyone in an org manages their own keys; owners and admins manage others' (admins not
an owner's), as :mod:`apps.keys.permissions` decides. The plaintext key appears in exactly
three responses, create, rotate and reveal, and only ever to the key's own user: rotating
someone else's key makes a successor that its user reveals.
``GET /api/v1/me`` lives here too: it shows the key the request authenticated with.
"""

from __future__ import annotations

from datetime import timedelta

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.keys import controls, selectors, services
from apps.keys.authentication import request_api_key
from apps.keys.models import ApiKey
from apps.keys.permissions import OWN_USER_ONLY_DETAIL, KeyAccess, key_access
from apps.orgs.models import PlatformRole, Role, role_at_least
from apps.orgs.permissions import OrgScopedAPIView
from apps.orgs.platform import has_platform_role
from apps.orgs.selectors import memberships_of
from pendra_console.api.exceptions import NotFound, PermissionDenied
from pendra_console.api.pagination import paginate, paginated
from pendra_console.api.serializers import StrictInputSerializer, error_responses

KEYS = ["keys"]
MAX_RATE = 10**9  # the plan's own limit is checked by the service; this only bounds the number
MAX_GRACE_SECONDS = int(services.MAX_GRACE.total_seconds())


class KeyOutputSerializer(serializers.Serializer):
    """What anyone may see about a key: never its hash or secret."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="pnd_<public id>: identifies the key, grants nothing.")
    last_four = serializers.CharField()
    status = serializers.ChoiceField(choices=["active", "awaiting_reveal", "rotating", "rotated", "expired", "revoked"])
    user_id = serializers.IntegerField()
    user_email = serializers.EmailField(source="user.email")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    rotated_at = serializers.DateTimeField(allow_null=True)
    grace_until = serializers.DateTimeField(allow_null=True)
    rotated_from = serializers.IntegerField(source="rotated_from_id", allow_null=True)
    rotate_every_days = serializers.IntegerField(allow_null=True)
    rotation_grace_seconds = serializers.IntegerField()
    allowed_models = serializers.ListField(child=serializers.CharField(), help_text="Empty: every model of the org.")
    allowed_ips = serializers.ListField(child=serializers.CharField(), help_text="CIDRs; empty: any address.")
    rpm_limit = serializers.IntegerField(allow_null=True, help_text="The key's own requests/minute (null: the org's).")
    tpm_limit = serializers.IntegerField(allow_null=True, help_text="The key's own tokens/minute (null: the org's).")

    class Meta:
        ref_name = "ApiKey"


class KeyWithSecretSerializer(KeyOutputSerializer):
    key = serializers.CharField(help_text="The full key. Shown once: store it now.")

    class Meta:
        ref_name = "ApiKeyWithSecret"


def _with_secret(key: ApiKey, plaintext: str) -> dict[str, object]:
    return dict(KeyOutputSerializer(key).data, key=plaintext)


class KeyPolicyFields(StrictInputSerializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    rotate_every_days = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=3650)
    rotation_grace_seconds = serializers.IntegerField(required=False, min_value=0, max_value=MAX_GRACE_SECONDS)
    allowed_models = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        max_length=controls.MAX_MODELS,
        help_text="Models the key may call, each offered to the org (400 otherwise); empty: all of them. "
        "GET /v1/models with the key lists only these; others get 403.",
    )
    allowed_ips = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        max_length=controls.MAX_NETWORKS,
        help_text="Addresses or CIDR ranges the key's requests may come from (403 from elsewhere); empty: any. "
        "The client's address is the connection's, or X-Forwarded-For read through PENDRA_TRUSTED_PROXIES only.",
    )
    rpm_limit = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_RATE,
        help_text="The key's own inference requests per minute, at most the org plan's (429 bucket \"key\").",
    )
    tpm_limit = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_RATE,
        help_text="The key's own chat and embeddings tokens per minute, at most the org plan's (429 bucket \"key\").",
    )


class KeyListView(OrgScopedAPIView):
    scope_map = {"GET": Role.MEMBER, "POST": Role.MEMBER}

    class InputSerializer(KeyPolicyFields):
        class Meta:
            ref_name = "ApiKeyCreate"

    @extend_schema(
        tags=KEYS,
        operation_id="orgs_keys_list",
        summary="Keys: your own, or everyone's for owners and admins",
        responses={200: paginated(KeyOutputSerializer, "ApiKey"), **error_responses(404)},
    )
    def get(self, request: Request, slug: str) -> Response:
        mine_only = not role_at_least(self.role, Role.ADMIN)
        keys = selectors.org_keys(org=self.org, user=request.user if mine_only else None)
        return paginate(request=request, view=self, queryset=keys, serializer_class=KeyOutputSerializer)

    @extend_schema(
        tags=KEYS,
        summary="Create a key for yourself; the key is returned once",
        request=InputSerializer,
        responses={201: KeyWithSecretSerializer, **error_responses(400, 404)},
    )
    def post(self, request: Request, slug: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, plaintext = services.api_key_create(
            org=self.org, user=request.user, actor=request.user, **data.validated_data
        )
        return Response(_with_secret(key, plaintext), status=status.HTTP_201_CREATED)


class KeyObjectView(OrgScopedAPIView):
    """A key of this org that the caller may manage: their own, or another's for owners and admins."""

    def access(self, key: ApiKey) -> KeyAccess:
        return key_access(
            key=key, user_id=self.request.user.pk, role=self.role, owner_ids=selectors.org_owner_ids(org=self.org)
        )

    def managed_key(self, key_id: int) -> ApiKey:
        key = selectors.org_key(org=self.org, key_id=key_id)
        if key is None:
            raise NotFound("No such key in this organisation.")
        refusal = self.access(key).manage_refusal()
        if refusal is not None:
            raise PermissionDenied(refusal)
        return key


class KeyDetailView(KeyObjectView):
    scope_map = {"GET": Role.MEMBER, "PATCH": Role.MEMBER, "DELETE": Role.MEMBER}

    class InputSerializer(KeyPolicyFields):
        class Meta:
            ref_name = "ApiKeyUpdate"

    @extend_schema(tags=KEYS, summary="A key", responses={200: KeyOutputSerializer, **error_responses(403, 404)})
    def get(self, request: Request, slug: str, key_id: int) -> Response:
        return Response(KeyOutputSerializer(self.managed_key(key_id)).data)

    @extend_schema(
        tags=KEYS,
        summary="Rename, set expiry, rotation policy or controls; owner, org and user never change",
        description="Members may only narrow their own key's controls (403 otherwise); owners and admins may widen "
        "them up to the organisation's plan and models (400 beyond).",
        request=InputSerializer,
        responses={200: KeyOutputSerializer, **error_responses(400, 403, 404)},
    )
    def patch(self, request: Request, slug: str, key_id: int) -> Response:
        key = self.managed_key(key_id)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        # A member may narrow their own key's controls, not loosen them (an admin may have set them).
        may_widen = role_at_least(self.role, Role.ADMIN)
        key = services.api_key_update(key=key, actor=request.user, may_widen=may_widen, **data.validated_data)
        return Response(KeyOutputSerializer(key).data)

    @extend_schema(
        tags=KEYS,
        summary="Revoke: the key stops working at once",
        responses={200: KeyOutputSerializer, **error_responses(403, 404)},
    )
    def delete(self, request: Request, slug: str, key_id: int) -> Response:
        key = services.api_key_revoke(key=self.managed_key(key_id), actor=request.user)
        return Response(KeyOutputSerializer(key).data)


class KeyRotateView(KeyObjectView):
    scope_map = {"POST": Role.MEMBER}

    class InputSerializer(StrictInputSerializer):
        grace_seconds = serializers.IntegerField(
            required=False,
            min_value=0,
            max_value=MAX_GRACE_SECONDS,
            help_text="How long the old secret keeps working (0: stops now). Default: the key's policy.",
        )

        class Meta:
            ref_name = "ApiKeyRotate"

    @extend_schema(
        tags=KEYS,
        summary="Rotate: a successor key is returned once; the old one works for grace_seconds",
        request=InputSerializer,
        responses={201: KeyWithSecretSerializer, **error_responses(400, 403, 404, 409)},
        description="The successor's `key` is returned only to the key's own user; for anyone else's key the "
        "successor is `awaiting_reveal` and its user reveals it.",
    )
    def post(self, request: Request, slug: str, key_id: int) -> Response:
        key = self.managed_key(key_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        grace = data.validated_data.get("grace_seconds", key.rotation_grace_seconds)
        own = self.access(key).obtain_secret
        successor, plaintext = services.api_key_rotate(
            key=key, actor=request.user, grace=timedelta(seconds=grace), reveal_later=not own
        )
        if plaintext is None:
            return Response(KeyOutputSerializer(successor).data, status=status.HTTP_201_CREATED)
        return Response(_with_secret(successor, plaintext), status=status.HTTP_201_CREATED)


class KeyRevealView(KeyObjectView):
    scope_map = {"POST": Role.MEMBER}

    @extend_schema(
        tags=KEYS,
        summary="Reveal the secret of a key made by scheduled rotation (once; then 410)",
        request=None,
        responses={200: KeyWithSecretSerializer, **error_responses(403, 404, 410)},
    )
    def post(self, request: Request, slug: str, key_id: int) -> Response:
        key = self.managed_key(key_id)
        if not self.access(key).obtain_secret:
            raise PermissionDenied(OWN_USER_ONLY_DETAIL)
        key, plaintext = services.api_key_reveal(key=key, actor=request.user)
        return Response(_with_secret(key, plaintext))


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
            "memberships": self.MembershipSerializer(memberships_of(user=user), many=True).data,
            "api_key": self.KeySerializer(key).data if key is not None else None,
        }
        return Response(data)
