"""The plan page: the org's limits and what it uses of each, the catalogue beside it, the owner's switch."""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from apps.console.access import OrgPage, ServiceRefused, service_call
from apps.keys.selectors import org_usable_key_count
from apps.orgs.models import Role
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
        catalogue = list(selectors.plan_list(include_private=False))
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
            can={"change": PlanChange.allows(self.role)},
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
