"""The plan page: the org's limits and what it uses of each, the catalogue beside it, the owner's switch;
and the operators' page of one org's plan terms (any plan, a dedicated one included, and per-org overrides)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from apps.console.access import OrgPage, ServiceRefused, service_call
from apps.console.worker_pages import OperatorPage
from apps.keys.selectors import org_usable_key_count
from apps.orgs.models import Organisation, Role
from apps.orgs.selectors import org_members
from apps.plans import selectors, services
from apps.plans.limits import current_use


@dataclass(frozen=True)
class Bucket:
    field: str  # the plan's limit field
    use_key: str  # the bucket's name in current_use() (or "keys"/"members")
    label: str
    unit: str


BUCKETS = [
    Bucket("chat_rpm", "chat", "Chat completions", "requests / min"),
    Bucket("embeddings_rpm", "embeddings", "Embeddings", "requests / min"),
    Bucket("images_rpm", "images", "Images", "requests / min"),
    Bucket("audio_rpm", "audio", "Audio", "requests / min"),
    Bucket("api_rpm", "api", "Admin API", "requests / min"),
    Bucket("chat_tpm", "chat_tokens", "Chat tokens", "tokens / min"),
    Bucket("embeddings_tpm", "embeddings_tokens", "Embedding tokens", "tokens / min"),
    Bucket("concurrent_streams", "streams", "Streams open at once", "streams"),
    Bucket("max_keys", "keys", "API keys", "keys"),
    Bucket("max_members", "members", "Members", "members"),
]


class PlanChoiceForm(forms.Form):
    plan = forms.SlugField(max_length=30)


class PlanPage(OrgPage):
    scope_map = {"GET": Role.MEMBER}

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        subscription = selectors.subscription_for_org(self.org.pk)
        plan = subscription.plan
        limits = selectors.effective_limits(subscription)  # an operator's per-org overrides included
        use = current_use(org_id=self.org.pk)
        use["keys"] = org_usable_key_count(org=self.org)
        use["members"] = org_members(org=self.org).count()
        # What an owner may switch to: the public self-serve plans (and the current one, to compare).
        catalogue = [p for p in selectors.plan_list(include_private=False) if p.self_serve or p.pk == plan.pk]
        rows = [
            {
                "bucket": bucket,
                "limit": limits[bucket.field],
                "used": use.get(bucket.use_key),
                "offers": [getattr(offer, bucket.field) for offer in catalogue],
            }
            for bucket in BUCKETS
        ]
        context = self.base_context(
            subscription=subscription,
            plan=plan,
            rows=rows,
            catalogue=catalogue,
            can={"change": PlanChange.allows(self.role) and plan.self_serve},
        )
        return render(request, "console/plan/plan.html", context)


class PlanChange(OrgPage):
    scope_map = {"POST": Role.OWNER}
    http_method_names = ["post"]

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        form = PlanChoiceForm(request.POST)
        # Only self-serve (public) plans: a dedicated plan is agreed with sales, not clicked.
        plan = selectors.plan_by_slug(form.cleaned_data["plan"], include_private=False) if form.is_valid() else None
        if plan is None:
            messages.error(request, "Choose one of the plans shown.")
            return redirect("console:plan", slug=self.org.slug)
        try:
            with service_call(request):
                services.subscription_change(org=self.org, plan=plan, actor=request.user)
        except ServiceRefused:
            return redirect("console:plan", slug=self.org.slug)
        messages.success(request, f"{self.org.name} is now on {plan.name}; the new limits apply from the next request.")
        return redirect("console:plan", slug=self.org.slug)


class OrgTermsForm(forms.Form):
    """An operator's plan for one org and its per-org limits: a blank limit is the plan's."""

    plan = forms.SlugField(max_length=30)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for bucket in BUCKETS:
            nullable = bucket.field in services.NULLABLE_LIMITS
            help_text = "Blank: the plan's. 'unlimited' lifts the cap." if nullable else "Blank: the plan's."
            self.fields[bucket.field] = forms.CharField(
                label=f"{bucket.label} ({bucket.unit})", required=False, help_text=help_text
            )

    def overrides(self) -> dict[str, int | None]:
        """The overrides typed in; a bad value is a field error (the form is then invalid)."""
        chosen: dict[str, int | None] = {}
        for bucket in BUCKETS:
            text = self.cleaned_data.get(bucket.field, "").strip()
            if not text:
                continue
            if text.lower() == "unlimited" and bucket.field in services.NULLABLE_LIMITS:
                chosen[bucket.field] = None
            elif text.isdigit():
                chosen[bucket.field] = int(text)
            else:
                self.add_error(
                    bucket.field,
                    "A whole number" + (", or unlimited." if bucket.field in services.NULLABLE_LIMITS else "."),
                )
        return chosen


class OrgTermsPage(OperatorPage):
    """Operators: an org's plan (any plan, a dedicated one included) and its per-org overrides."""

    def _org(self, slug: str) -> Organisation:
        org = Organisation.objects.filter(slug=slug).first()
        if org is None:
            raise Http404("Organisation not found.")
        return org

    def _render(self, org: Organisation, form: OrgTermsForm | None = None) -> HttpResponse:
        subscription = selectors.subscription_for_org(org.pk)
        overrides = subscription.overrides or {}
        if form is None:
            initial: dict[str, Any] = {"plan": subscription.plan.slug}
            for name, value in overrides.items():
                initial[name] = "unlimited" if value is None else str(value)
            form = OrgTermsForm(initial=initial)
        limits = selectors.effective_limits(subscription)
        rows = [
            {"bucket": b, "plan": getattr(subscription.plan, b.field), "limit": limits[b.field], "field": form[b.field]}
            for b in BUCKETS
        ]
        context = {
            "org": org,
            "subscription": subscription,
            "plans": selectors.plan_list(include_private=True),
            "rows": rows,
            "form": form,
            "overridden": set(overrides),
            "dedicated_workers": org.dedicated_workers.order_by("name"),
        }
        return render(self.request, "console/plan/operator.html", context)

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        return self._render(self._org(slug))

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        org = self._org(slug)
        form = OrgTermsForm(request.POST)
        if not form.is_valid():
            return self._render(org, form)
        overrides = form.overrides()
        plan = selectors.plan_by_slug(form.cleaned_data["plan"], include_private=True)
        if plan is None:
            form.add_error("plan", "Choose one of the plans listed.")
        if form.errors or plan is None:
            return self._render(org, form)
        try:
            with service_call(request, form), transaction.atomic():
                services.subscription_change(org=org, plan=plan, actor=request.user)
                services.overrides_set(org=org, overrides=overrides, actor=request.user)
        except ServiceRefused:
            return self._render(org, form)
        messages.success(request, f"{org.name} is on {plan.name} with its overrides; they apply from the next request.")
        return redirect("console:org-terms", slug=org.slug)
