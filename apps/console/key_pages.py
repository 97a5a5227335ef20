"""API key pages: list and create, one key's policy, rotate, reveal, revoke.

A new secret (create, rotate, reveal) is rendered in the response to the POST that made
it, never stored and never shown after a redirect, with ``Cache-Control: no-store``: a
reload or the back button cannot bring it back. With htmx the secret replaces the form
in place; without it the POST answers with a page of its own. Everything else is
POST-redirect-GET. Who may do what to a key is :func:`apps.keys.permissions.key_access`,
the same rule the admin API applies.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache

from apps.console.access import OrgPage, ServiceRefused, is_htmx, redirect_after_post, service_call
from apps.console.forms import KeyCreateForm, KeyPolicyForm, KeyRotateForm
from apps.console.key_forms import control_initial
from apps.keys import selectors, services
from apps.keys.models import ApiKey
from apps.keys.permissions import OWN_USER_ONLY_DETAIL, KeyAccess, key_access
from apps.orgs.models import Role, role_at_least

KEYS_PER_PAGE = 50


def _secret_response(request: HttpRequest, context: dict[str, Any]) -> HttpResponse:
    """The one response that ever carries this secret: not cached, not stored, not redirected to."""
    template = "console/keys/_secret.html" if is_htmx(request) else "console/keys/secret.html"
    response = render(request, template, context)
    add_never_cache_headers(response)
    return response


class KeyPage(OrgPage):
    def access(self, key: ApiKey, owner_ids: frozenset[int] | None = None) -> KeyAccess:
        if owner_ids is None:
            owner_ids = selectors.org_owner_ids(org=self.org)
        return key_access(key=key, user_id=self.request.user.pk, role=self.role, owner_ids=owner_ids)


@method_decorator(never_cache, name="dispatch")
class KeyList(KeyPage):
    scope_map = {"GET": Role.MEMBER, "POST": Role.MEMBER}

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        return self.render_list(KeyCreateForm())

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        """Create a key for yourself; its secret is in this response and nowhere else."""
        form = KeyCreateForm(request.POST)
        if form.is_valid():
            try:
                with service_call(request, form):
                    key, plaintext = services.api_key_create(
                        org=self.org, user=request.user, actor=request.user, **form.service_fields()
                    )
            except ServiceRefused:
                pass
            else:
                return _secret_response(
                    request, self.base_context(key=key, secret=plaintext, heading="Your new API key")
                )
        if is_htmx(request):
            return render(request, "console/keys/_create.html", self.base_context(form=form))
        return self.render_list(form)

    def render_list(self, form: KeyCreateForm) -> HttpResponse:
        mine_only = not role_at_least(self.role, Role.ADMIN)
        keys = selectors.org_keys(org=self.org, user=self.request.user if mine_only else None)
        page = Paginator(keys, KEYS_PER_PAGE).get_page(self.request.GET.get("page"))
        owner_ids = selectors.org_owner_ids(org=self.org)
        rows = [(key, self.access(key, owner_ids)) for key in page.object_list]
        context = self.base_context(form=form, page=page, rows=rows, mine_only=mine_only)
        return render(self.request, "console/keys/list.html", context)


class KeyObjectPage(KeyPage):
    """One key of this org: 404 outside it, 403 unless the caller may manage it (as the API answers)."""

    def managed_key(self, key_id: int) -> tuple[ApiKey, KeyAccess]:
        key = selectors.org_key(org=self.org, key_id=key_id)
        if key is None:
            raise Http404("No such key in this organisation.")
        access = self.access(key)
        refusal = access.manage_refusal()
        if refusal is not None:
            raise PermissionDenied(refusal)
        return key, access

    @staticmethod
    def initial(key: ApiKey) -> dict[str, Any]:
        return {
            "name": key.name,
            "expires_on": key.expires_at.date() if key.expires_at else None,
            "rotate_every_days": key.rotate_every_days or "",
            "rotation_grace_seconds": key.rotation_grace_seconds,
            **control_initial(key),
        }

    def render_detail(
        self, key: ApiKey, access: KeyAccess, form: KeyPolicyForm, rotate_form: KeyRotateForm
    ) -> HttpResponse:
        # A rotated key's successor is the one to rotate next (the service answers 409 otherwise).
        rotatable = key.revoked_at is None and not hasattr(key, "successor")
        context = self.base_context(key=key, access=access, form=form, rotate_form=rotate_form, rotatable=rotatable)
        return render(self.request, "console/keys/detail.html", context)


@method_decorator(never_cache, name="dispatch")
class KeyDetail(KeyObjectPage):
    scope_map = {"GET": Role.MEMBER, "POST": Role.MEMBER}

    def get(self, request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
        key, access = self.managed_key(key_id)
        return self.render_detail(key, access, KeyPolicyForm(initial=self.initial(key), key=key), KeyRotateForm())

    def post(self, request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
        """Set name, expiry and rotation schedule."""
        key, access = self.managed_key(key_id)
        form = KeyPolicyForm(request.POST, key=key)
        if form.is_valid():
            try:
                with service_call(request, form):
                    # A member may narrow their own key's controls only, as in the API.
                    may_widen = role_at_least(self.role, Role.ADMIN)
                    fields = form.service_fields()
                    key = services.api_key_update(key=key, actor=request.user, may_widen=may_widen, **fields)
            except ServiceRefused:
                pass
            else:
                messages.success(request, f"Saved the settings of {key.name}.")
                return redirect("console:key-detail", slug=self.org.slug, key_id=key.pk)
        return self.render_detail(key, access, form, KeyRotateForm())


class KeyRotate(KeyObjectPage):
    scope_map = {"POST": Role.MEMBER}
    http_method_names = ["post"]

    def post(self, request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
        """Rotate: your own key's successor secret is shown once; another's successor waits for its user."""
        key, access = self.managed_key(key_id)
        form = KeyRotateForm(request.POST)
        if form.is_valid():
            try:
                with service_call(request, form):
                    successor, plaintext = services.api_key_rotate(
                        key=key, actor=request.user, grace=form.grace(), reveal_later=not access.obtain_secret
                    )
            except ServiceRefused:
                pass
            else:
                if plaintext is not None:
                    context = self.base_context(key=successor, secret=plaintext, heading="The rotated key")
                    return _secret_response(request, context)
                messages.success(request, f"Rotated {key.name}; {key.user.email} reveals the new secret.")
                return redirect("console:keys", slug=self.org.slug)
        if is_htmx(request):
            context = self.base_context(key=key, access=access, rotate_form=form, rotatable=True)
            return render(request, "console/keys/_rotate.html", context)
        return self.render_detail(key, access, KeyPolicyForm(initial=self.initial(key), key=key), form)


class KeyReveal(KeyObjectPage):
    scope_map = {"POST": Role.MEMBER}
    http_method_names = ["post"]

    def post(self, request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
        """The secret of a successor made by the schedule (or by an admin): once, to its own user."""
        key, access = self.managed_key(key_id)
        if not access.obtain_secret:
            raise PermissionDenied(OWN_USER_ONLY_DETAIL)
        try:
            with service_call(request):
                key, plaintext = services.api_key_reveal(key=key, actor=request.user)
        except ServiceRefused:
            return redirect("console:keys", slug=self.org.slug)
        return _secret_response(request, self.base_context(key=key, secret=plaintext, heading="Your rotated key"))


class KeyRevoke(KeyObjectPage):
    scope_map = {"POST": Role.MEMBER}
    http_method_names = ["post"]

    def post(self, request: HttpRequest, slug: str, key_id: int) -> HttpResponse:
        key, access = self.managed_key(key_id)
        try:
            with service_call(request):
                key = services.api_key_revoke(key=key, actor=request.user)
        except ServiceRefused:
            return redirect("console:keys", slug=self.org.slug)
        if is_htmx(request) and request.headers.get("HX-Target") == f"key-{key.pk}":
            # The list's row swaps itself for its revoked version.
            mine_only = not role_at_least(self.role, Role.ADMIN)
            context = self.base_context(key=key, access=access, mine_only=mine_only)
            return render(request, "console/keys/_row.html", context)
        messages.success(request, f"Revoked {key.name}: it stops working at once.")
        return redirect_after_post(request, "console:keys", self.org.slug)
