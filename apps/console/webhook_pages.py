"""Webhook pages for owners and admins: endpoints, their deliveries with every attempt, re-send.

The same services and selectors as the admin API (apps/webhooks). An endpoint's signing
secret is rendered once, in the response to the POST that created it, never cached.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache

from apps.console.access import OrgPage, ServiceRefused, redirect_after_post, service_call
from apps.orgs.models import Role
from apps.webhooks import selectors, services
from apps.webhooks.models import Endpoint, EventType

DELIVERIES_PER_PAGE = 25
ADMINS = {"GET": Role.ADMIN, "POST": Role.ADMIN}


class EndpointForm(forms.Form):
    url = forms.CharField(label="URL", max_length=500, help_text="https://, reachable from the internet.")
    events = forms.MultipleChoiceField(label="Events", choices=EventType.choices, widget=forms.CheckboxSelectMultiple)
    description = forms.CharField(label="Description", max_length=200, required=False)


@method_decorator(never_cache, name="dispatch")
class WebhookList(OrgPage):
    scope_map = ADMINS

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        return self.render_list(EndpointForm())

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        form = EndpointForm(request.POST)
        if form.is_valid():
            try:
                with service_call(request, form):
                    endpoint = services.endpoint_create(org=self.org, actor=request.user, **form.cleaned_data)
            except ServiceRefused:
                pass
            else:
                response = render(request, "console/webhooks/secret.html", self.base_context(endpoint=endpoint))
                add_never_cache_headers(response)
                return response
        return self.render_list(form)

    def render_list(self, form: EndpointForm) -> HttpResponse:
        endpoints = list(selectors.org_endpoints(org=self.org))
        return render(self.request, "console/webhooks/list.html", self.base_context(form=form, endpoints=endpoints))


class EndpointPage(OrgPage):
    scope_map = ADMINS

    def endpoint(self, endpoint_id: str) -> Endpoint:
        endpoint = selectors.org_endpoint(org=self.org, endpoint_id=endpoint_id)
        if endpoint is None:
            raise Http404("No such webhook endpoint in this organisation.")
        return endpoint


class WebhookDeliveries(EndpointPage):
    def get(self, request: HttpRequest, slug: str, endpoint_id: str) -> HttpResponse:
        endpoint = self.endpoint(endpoint_id)
        deliveries = selectors.endpoint_deliveries(endpoint=endpoint)
        page = Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
        context = self.base_context(endpoint=endpoint, page=page)
        return render(request, "console/webhooks/deliveries.html", context)


class WebhookResend(EndpointPage):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, slug: str, endpoint_id: str, delivery_id: str) -> HttpResponse:
        endpoint = self.endpoint(endpoint_id)
        delivery = selectors.org_delivery(org=self.org, delivery_id=delivery_id)
        if delivery is None or delivery.endpoint_id != endpoint.pk:
            raise Http404("No such delivery for this endpoint.")
        services.delivery_resend(delivery=delivery, actor=request.user)
        messages.success(request, f"Sending the {delivery.event.type} event to {endpoint.url} again.")
        return redirect_after_post(request, "console:webhook-deliveries", self.org.slug, endpoint.pk)


class WebhookDelete(EndpointPage):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, slug: str, endpoint_id: str) -> HttpResponse:
        endpoint = self.endpoint(endpoint_id)
        services.endpoint_delete(endpoint=endpoint, actor=request.user)
        messages.success(request, f"Removed the webhook endpoint {endpoint.url}.")
        return redirect_after_post(request, "console:webhooks", self.org.slug)
