"""The role checks, written once.

- :class:`OrgScopedAPIView`: the base class of every admin-API view under
  ``/api/v1/orgs/<slug>/``. It authenticates, loads the org *for the caller* (an outsider,
  or a key of another org, gets 404 so the org's existence is not revealed) and checks the
  caller's current role against ``scope_map`` for the HTTP method (403 naming the role).
- :class:`IsOperator`, :class:`IsSupportOrOperator`: DRF permissions for Pendra's own staff.
- :class:`NotAnOrgKey`: user-level actions outside any one org that an org's API key may not take.

A credential bound to one org (an API key; apps.keys puts it in ``request.auth``) is
read through :mod:`apps.orgs.credentials`, so this module needs nothing from the keys app.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.orgs import selectors
from apps.orgs.credentials import org_credential
from apps.orgs.models import Membership, Organisation, Role, role_at_least
from apps.orgs.platform import is_operator, is_support
from pendra_console.api.exceptions import NotFound, PermissionDenied

ORG_NOT_FOUND = "Organisation not found."


def role_required_detail(role: str) -> str:
    """The 403 detail: names the weakest role that would have been allowed."""
    if role == Role.OWNER:
        return "This action requires the owner role."
    if role == Role.ADMIN:
        return "This action requires the owner or admin role."
    return f"This action requires the {role} role."


class RoleRequired(PermissionDenied):
    def __init__(self, role: str) -> None:
        super().__init__(role_required_detail(role))


def caller_membership(request: Request, slug: str) -> Membership:
    """The caller's membership in ``slug``, or 404 whether the org is absent, foreign or another key's."""
    credential = org_credential(request)
    if credential is not None:
        membership = credential.membership
        if membership is None or membership.org.slug != slug:
            raise NotFound(ORG_NOT_FOUND)
        return membership
    membership = selectors.membership_for(user=request.user, slug=slug)
    if membership is None:
        raise NotFound(ORG_NOT_FOUND)
    return membership


class OrgScopedAPIView(APIView):
    """Subclasses declare ``scope_map = {"GET": Role.MEMBER, "PATCH": Role.OWNER, ...}``.

    A method missing from ``scope_map`` needs the owner role: forgetting a declaration
    fails closed. After :meth:`initial`, ``self.org`` and ``self.membership`` are the
    caller's, so a view only ever queries through them.
    """

    permission_classes = [IsAuthenticated]
    scope_map: ClassVar[dict[str, str]] = {}
    org: Organisation
    membership: Membership

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.membership = caller_membership(request, kwargs["slug"])
        self.org = self.membership.org
        # The admin request record names the org even for session callers (requestlog middleware).
        request._request.pendra_org_id = self.org.pk  # type: ignore[attr-defined]
        method = request.method or "GET"
        if getattr(self, method.lower(), None) is None:
            return  # dispatch answers 405 for a method the view does not have
        required = self.required_role(method)
        if not role_at_least(self.membership.role, required):
            raise RoleRequired(required)

    def required_role(self, method: str) -> str:
        if method in {"HEAD", "OPTIONS"}:
            method = "GET"
        return self.scope_map.get(method, Role.OWNER)

    @property
    def role(self) -> str:
        return self.membership.role


class NotAnOrgKey(BasePermission):
    """For user-level actions outside any one org (create an org, accept an invitation).

    An org's key is a credential for that org: it must not act on its user's behalf
    elsewhere. A session, or a staff key made outside any org, may.
    """

    message = "An organisation's API key cannot do this; sign in to the console instead."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return org_credential(request) is None


class IsOperator(BasePermission):
    message = "This action requires the operator role."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return is_operator(request.user)


class IsSupportOrOperator(BasePermission):
    message = "This action requires the support or operator role."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return is_support(request.user) or is_operator(request.user)
