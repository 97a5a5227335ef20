"""The org's request log and one request's explanation, for owners and admins (members: their own keys').

The log is the API's selector (:func:`apps.requestlog.selectors.org_requests`): newest first,
a page at a time by an opaque cursor in the query string, so a deep page costs what the
first one does. A cursor that is not one (edited, truncated, from another deployment) shows
the newest page with a note instead of an error: a stale link should not look like an outage.
Each row opens the explanation, the same one support sees, scoped like the API's org route.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from apps.console.access import OrgPage
from apps.console.forms import RequestLogFilterForm
from apps.keys.selectors import org_keys
from apps.orgs.models import Role, role_at_least
from apps.requestlog import selectors
from apps.requestlog.explanations import explain_records
from pendra_console.api.exceptions import ValidationError
from pendra_console.request_id import is_request_id

PAGE_SIZE = 50


class RequestLog(OrgPage):
    scope_map = {"GET": Role.MEMBER}

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        mine_only = not role_at_least(self.role, Role.ADMIN)
        keys = org_keys(org=self.org, user=request.user if mine_only else None)
        choices = [(key.public_id, f"{key.name} ({key.prefix})") for key in keys]
        form = RequestLogFilterForm(request.GET or None, keys=choices)
        filters = selectors.request_filters_for(role=self.role, user=request.user, **form.filters())
        cursor = request.GET.get("cursor") or None
        try:
            page = selectors.org_requests(self.org, filters=filters, cursor=cursor, limit=PAGE_SIZE)
        except ValidationError:
            messages.warning(request, "That page link is no longer valid; here are the newest requests.")
            cursor = None
            page = selectors.org_requests(self.org, filters=filters, limit=PAGE_SIZE)
        query = request.GET.copy()
        query.pop("cursor", None)
        context = self.base_context(
            form=form,
            page=page,
            mine_only=mine_only,
            filter_query=query.urlencode(),
            paged=cursor is not None,
        )
        return render(request, "console/requests/list.html", context)


class RequestExplanation(OrgPage):
    scope_map = {"GET": Role.MEMBER}

    def get(self, request: HttpRequest, slug: str, request_id: str) -> HttpResponse:
        records = []
        if is_request_id(request_id):
            records = selectors.org_records_by_request_id(
                org=self.org, role=self.role, user=request.user, request_id=request_id
            )
        if not records:
            raise Http404(f"No request {request_id} in this organisation.")
        context = self.base_context(explained=explain_records(records), request_id=request_id)
        return render(request, "console/requests/detail.html", context)
