"""Who may manage the GPU fleet: Pendra's operators only (support staff and org users get 403)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.orgs.platform import is_operator

OPERATOR_REQUIRED = "This action requires the operator role."


class IsOperator(BasePermission):
    # An anonymous caller fails here too; DRF then answers 401 because no authenticator succeeded.
    message = OPERATOR_REQUIRED

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_operator(request.user)
