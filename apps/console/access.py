"""Who may open which console page: the API's role checks, applied to console views.

:class:`OrgPage` is the base of every page under ``/orgs/<slug>/``. Like the admin API's
``OrgScopedAPIView`` it declares a ``scope_map`` per HTTP method (a method missing from
it needs the owner role, so forgetting a declaration fails closed), loads the caller's
membership through the same selector, answers 404 to an outsider (the org's existence is
not revealed) and 403 naming the role to a member without it. A signed-out visitor is
sent to sign in and back.

Templates ask :meth:`OrgPage.allows` (through the ``can`` context) whether to show a
control, so a button appears exactly when its view would accept the POST.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views import View

from apps.orgs import selectors
from apps.orgs.models import Membership, Organisation, Role, role_at_least
from apps.orgs.permissions import IsOperator, IsSupportOrOperator, role_required_detail
from apps.orgs.platform import is_operator, is_support
from pendra_console.api.exceptions import DomainError

ORG_NOT_FOUND = "Organisation not found."


class ServiceRefused(Exception):
    """A service said no; the view has already put the reason on the form or in a message."""


@contextmanager
def service_call(request: HttpRequest, form: forms.Form | None = None) -> Iterator[None]:
    """Run a service; its refusal goes next to the named field of ``form``, or into a message.

    The services raise the same plain domain exceptions for every surface (the API turns
    them into JSON); here a field-keyed detail becomes that field's error and anything else an
    error message, and :class:`ServiceRefused` tells the view not to report success.
    """
    try:
        yield
    except DomainError as exc:
        detail = exc.detail
        if isinstance(detail, dict) and form is not None:
            for field, errors in detail.items():
                for error in errors if isinstance(errors, list) else [errors]:
                    form.add_error(field if field in form.fields else None, str(error))
        elif isinstance(detail, dict):
            for errors in detail.values():
                for error in errors if isinstance(errors, list) else [errors]:
                    messages.error(request, str(error))
        elif isinstance(detail, list):
            for error in detail:
                messages.error(request, str(error))
        else:
            messages.error(request, str(detail))
        raise ServiceRefused from exc


class OrgPage(View):
    """Subclasses declare ``scope_map = {"GET": Role.MEMBER, "POST": Role.OWNER}``."""

    scope_map: ClassVar[dict[str, str]] = {}
    request: HttpRequest
    org: Organisation
    membership: Membership

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        membership = selectors.membership_for(user=request.user, slug=kwargs["slug"])
        if membership is None:
            raise Http404(ORG_NOT_FOUND)
        self.membership = membership
        self.org = membership.org
        method = (request.method or "GET").upper()
        if method.lower() in self.http_method_names and hasattr(self, method.lower()):  # else a 405
            required = self.required_role(method)
            if not role_at_least(self.membership.role, required):
                raise PermissionDenied(role_required_detail(required))
        return super().dispatch(request, *args, **kwargs)

    @classmethod
    def required_role(cls, method: str) -> str:
        if method in {"HEAD", "OPTIONS"}:
            method = "GET"
        return cls.scope_map.get(method, Role.OWNER)

    @classmethod
    def allows(cls, role: str, method: str = "POST") -> bool:
        return role_at_least(role, cls.required_role(method))

    @property
    def role(self) -> str:
        return self.membership.role

    def base_context(self, **extra: Any) -> dict[str, Any]:
        return {"org": self.org, "membership": self.membership, "role": self.role, **extra}


class PlatformPage(View):
    """A page for Pendra's own staff: support and operators (``operators_only`` narrows it).

    The same rule, and the same 403 detail, as the admin API's staff permissions; a
    signed-out visitor is sent to sign in and back.
    """

    operators_only: ClassVar[bool] = False
    request: HttpRequest

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if self.operators_only and not is_operator(request.user):
            raise PermissionDenied(IsOperator.message)
        if not (is_support(request.user) or is_operator(request.user)):
            raise PermissionDenied(IsSupportOrOperator.message)
        return super().dispatch(request, *args, **kwargs)


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def redirect_after_post(request: HttpRequest, url_name: str, *args: Any) -> HttpResponse:
    """POST-redirect-GET; an htmx request (a confirmed button) is told to load the page itself."""
    url = reverse(url_name, args=args)
    if is_htmx(request):
        response = HttpResponse()
        response["HX-Redirect"] = url
        return response
    return HttpResponseRedirect(url)
