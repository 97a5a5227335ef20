"""The organisation's sign-in policy: an owner requires two-factor sign-in of every member."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from apps.accounts import selectors as account_selectors
from apps.accounts import services as account_services
from apps.console.access import OrgPage, ServiceRefused, service_call
from apps.orgs.models import Role


class TwoFactorPolicyForm(forms.Form):
    require_two_factor = forms.BooleanField(
        label="Require two-factor sign-in for every member",
        required=False,
        help_text="Members who have not set it up are sent to do so the next time they open the console.",
    )


class OrgSecurity(OrgPage):
    scope_map = {"GET": Role.OWNER, "POST": Role.OWNER}

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        required = account_selectors.org_requires_two_factor(org=self.org)
        return self.render_page(TwoFactorPolicyForm(initial={"require_two_factor": required}))

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        form = TwoFactorPolicyForm(request.POST)
        if not form.is_valid():
            return self.render_page(form, status=400)
        required = form.cleaned_data["require_two_factor"]
        try:
            with service_call(request, form):
                account_services.org_two_factor_requirement_set(org=self.org, actor=request.user, required=required)
        except ServiceRefused:
            return self.render_page(form, status=400)
        messages.success(request, f"Two-factor sign-in is now {'required' if required else 'optional'}.")
        return redirect("console:org-security", slug=self.org.slug)

    def render_page(self, form: TwoFactorPolicyForm, *, status: int = 200) -> HttpResponse:
        context = self.base_context(
            form=form,
            you_have_two_factor=account_selectors.user_has_two_factor(user=self.request.user),
            members_without=account_selectors.org_members_without_two_factor(org=self.org),
        )
        return render(self.request, "console/org/security.html", context, status=status)
