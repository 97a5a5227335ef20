"""Plain domain exceptions: what a service raises when a rule says no.

They know nothing of HTTP or DRF, so a Celery task, a management command or a console
page can catch them as well as the admin API. :mod:`pendra_console.errors` maps each to
its status code (400, 403, 404, 409, 410) and the ``{"detail": ...}`` body.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class. ``detail`` is what the caller is told: a sentence, or ``{field: message}``."""

    default_detail = "The request could not be completed."

    def __init__(self, detail: str | dict[str, Any] | None = None) -> None:
        self.detail: str | dict[str, Any] = detail if detail is not None else self.default_detail
        super().__init__(self.detail)


class ValidationError(DomainError):
    """Invalid input (400); ``detail`` maps each wrong field to why."""

    default_detail = "Invalid input."


class PermissionDenied(DomainError):
    """The caller may not do this (403); ``detail`` says what would allow it."""

    default_detail = "You do not have permission to perform this action."


class NotFound(DomainError):
    """No such object, or not one the caller may see (404)."""

    default_detail = "Not found."


class Conflict(DomainError):
    """A concurrent change got there first (409)."""

    default_detail = "The resource was changed by another request."


class Gone(DomainError):
    """Used, withdrawn or expired, and never coming back (410)."""

    default_detail = "This resource is no longer available."
