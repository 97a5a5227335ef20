"""Errors raised by the services, so every surface (API, console, task, command) answers alike.

They are DRF exceptions because the admin API is the main caller: the project's one
exception handler turns them into ``{"detail": ..., "request_id": ...}``. Console views
catch :class:`rest_framework.exceptions.APIException` and show ``.detail``.
"""

from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError

__all__ = ["Conflict", "Gone", "NotFound", "PermissionDenied", "RoleRequired", "ValidationError"]


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The resource was changed by another request."
    default_code = "conflict"


class Gone(APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "This resource is no longer available."
    default_code = "gone"


def role_required_detail(role: str) -> str:
    """The 403 detail: names the weakest role that would have been allowed."""
    if role == "owner":
        return "This action requires the owner role."
    if role == "admin":
        return "This action requires the owner or admin role."
    return f"This action requires the {role} role."


class RoleRequired(PermissionDenied):
    def __init__(self, role: str) -> None:
        super().__init__(role_required_detail(role))
