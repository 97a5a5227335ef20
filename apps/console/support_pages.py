"""Pages for Pendra's staff: the support lookup (support and operators) and the platform audit log (operators).

Support pastes an X-Request-Id from a ticket and reads, on one page, every request that
carried it, each explained (:mod:`apps.requestlog.explanations`) with its org; every lookup is
an audit event (:func:`apps.requestlog.services.support_lookup`, the API's own service), and
the page lists the user's recent lookups. An htmx request gets the result region only.
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.audit.selectors import platform_audit_events, recent_lookups
from apps.console.access import PlatformPage, is_htmx
from apps.console.forms import PlatformAuditFilterForm, RequestLookupForm
from apps.requestlog.services import support_lookup

EVENTS_PER_PAGE = 50


class SupportLookup(PlatformPage):
    def get(self, request: HttpRequest) -> HttpResponse:
        form = RequestLookupForm(request.GET or None)
        explained = None
        if form.is_bound and form.is_valid():
            explained = support_lookup(actor=request.user, request_id=form.cleaned_data["request_id"])
        context = {
            "form": form,
            "explained": explained,
            "looked_up": form.cleaned_data["request_id"] if explained is not None else "",
            "recent": recent_lookups(actor=request.user),
        }
        template = "console/support/_lookup.html" if is_htmx(request) else "console/support/lookup.html"
        return render(request, template, context)


class PlatformAudit(PlatformPage):
    operators_only = True

    def get(self, request: HttpRequest) -> HttpResponse:
        form = PlatformAuditFilterForm(request.GET or None)
        events = platform_audit_events(**form.filters())
        page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
        query = request.GET.copy()
        query.pop("page", None)
        context = {"form": form, "page": page, "filter_query": query.urlencode()}
        return render(request, "console/support/audit.html", context)
