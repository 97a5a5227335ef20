"""Organisation pages: the overview, and the owner's rename, transfer of ownership and deletion."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from apps.console.access import OrgPage, ServiceRefused, service_call
from apps.console.forms import OrgDeleteForm, OrgRenameForm, TransferOwnershipForm
from apps.keys import selectors as key_selectors
from apps.orgs import selectors as org_selectors
from apps.orgs import services as org_services
from apps.orgs.models import Role, role_at_least
from apps.plans.selectors import subscription_for_org
from apps.requestlog.selectors import usage_report


class OrgOverview(OrgPage):
    scope_map = {"GET": Role.MEMBER}

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        return self.render_overview()

    def transfer_candidates(self) -> Any:
        return org_selectors.org_members(org=self.org).exclude(pk=self.membership.pk)

    def render_overview(self, **forms: Any) -> HttpResponse:
        now = timezone.now()
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        own_keys_only = not role_at_least(self.role, Role.ADMIN)
        member = self.request.user if own_keys_only else None
        usage = usage_report(self.org, "model", month_start, now, member=member)
        owner = OrgRename.allows(self.role)
        context = self.base_context(
            subscription=subscription_for_org(self.org.pk),
            member_count=org_selectors.org_members(org=self.org).count(),
            key_count=key_selectors.org_usable_key_count(
                org=self.org, user=self.request.user if own_keys_only else None
            ),
            own_keys_only=own_keys_only,
            month_start=month_start,
            usage=usage.totals,
            can={"rename": owner, "transfer": OrgTransfer.allows(self.role), "delete": OrgDelete.allows(self.role)},
        )
        if owner:
            context["rename_form"] = forms.get("rename_form") or OrgRenameForm(initial={"name": self.org.name})
            context["transfer_form"] = forms.get("transfer_form") or TransferOwnershipForm(
                candidates=self.transfer_candidates()
            )
            context["delete_form"] = forms.get("delete_form") or OrgDeleteForm(slug=self.org.slug)
        return render(self.request, "console/org/overview.html", context)


class OrgRename(OrgOverview):
    scope_map = {"POST": Role.OWNER}
    http_method_names = ["post"]

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        form = OrgRenameForm(request.POST)
        if form.is_valid():
            try:
                with service_call(request, form):
                    org_services.org_update(org=self.org, actor=request.user, name=form.cleaned_data["name"])
            except ServiceRefused:
                return self.render_overview(rename_form=form)
            messages.success(request, "Organisation renamed.")
            return redirect("console:org-overview", slug=self.org.slug)
        return self.render_overview(rename_form=form)


class OrgTransfer(OrgOverview):
    scope_map = {"POST": Role.OWNER}
    http_method_names = ["post"]

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        form = TransferOwnershipForm(request.POST, candidates=self.transfer_candidates())
        if form.is_valid():
            target = form.cleaned_data["member"]
            try:
                with service_call(request, form):
                    org_services.ownership_transfer(org=self.org, actor=request.user, to_membership=target)
            except ServiceRefused:
                return self.render_overview(transfer_form=form)
            messages.success(request, f"{target.user.email} now owns {self.org.name}; you are an admin.")
            return redirect("console:org-overview", slug=self.org.slug)
        return self.render_overview(transfer_form=form)


class OrgDelete(OrgOverview):
    scope_map = {"POST": Role.OWNER}
    http_method_names = ["post"]

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        form = OrgDeleteForm(request.POST, slug=self.org.slug)
        if form.is_valid():
            name = self.org.name
            try:
                with service_call(request, form):
                    org_services.org_delete(org=self.org, actor=request.user)
            except ServiceRefused:
                return self.render_overview(delete_form=form)
            messages.success(request, f"{name} was deleted, with its members' access and keys.")
            return HttpResponseRedirect(reverse("console:home"))
        return self.render_overview(delete_form=form)
