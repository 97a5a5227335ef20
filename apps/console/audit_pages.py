"""The org's audit log for owners and admins: filter by actor, action and date; newest first, paginated."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.audit.selectors import org_audit_events
from apps.console.access import OrgPage
from apps.console.forms import AuditFilterForm
from apps.orgs import selectors
from apps.orgs.models import Role

EVENTS_PER_PAGE = 50


class AuditLog(OrgPage):
    scope_map = {"GET": Role.ADMIN}

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        actors = [(m.user_id, m.user.email) for m in selectors.org_members(org=self.org)]
        form = AuditFilterForm(request.GET or None, actors=actors)
        events = org_audit_events(org=self.org, **form.filters())
        page = Paginator(events, EVENTS_PER_PAGE).get_page(request.GET.get("page"))
        query = request.GET.copy()
        query.pop("page", None)
        context = self.base_context(form=form, page=page, filter_query=query.urlencode())
        return render(request, "console/audit/list.html", context)
