"""The reads ``records_bench.py`` times, each through the code the console and the API run.

Kept apart from the bench's set-up so the list of reads is easy to see and to extend.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.orgs.models import Membership, Organisation, Role
from apps.requestlog.cursors import Position, encode
from apps.requestlog.explanations import explain_records
from apps.requestlog.models import RequestRecord
from apps.requestlog.selectors import (
    RequestFilters,
    org_dashboard,
    org_requests,
    records_by_request_id,
    records_for_org,
    usage_report,
)

PAGE = 50


@dataclass
class Reads:
    org: Organisation
    owner: Any
    org_records: int
    request_ids: list[str]
    deep_before: Any

    @classmethod
    def prepare(cls, *, iterations: int) -> Reads:
        """The busiest org (the worst case for its pages), its owner, and ids to look up."""
        from django.db.models import Count

        busiest = (
            RequestRecord.objects.filter(org__isnull=False)
            .values("org_id")
            .annotate(n=Count("id"))
            .order_by("-n")
            .first()
        )
        assert busiest is not None, "no records: run generate_records first"
        org = Organisation.objects.get(pk=busiest["org_id"])
        owner = get_user_model().objects.get(pk=Membership.objects.filter(org=org, role=Role.OWNER).first().user_id)
        # Ids spread over the whole table, found by primary key so the sampling costs no scan.
        last = RequestRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0
        sample = random.Random(7).sample(range(1, last + 1), min(iterations, last))
        ids = list(RequestRecord.objects.filter(id__in=sample).values_list("request_id", flat=True))
        # A deep page: the keyset cursor half-way through the org's history.
        middle = records_for_org(org=org, role=Role.OWNER, user=owner).values_list("created_at", "id")[
            busiest["n"] // 2
        ]
        return cls(org=org, owner=owner, org_records=busiest["n"], request_ids=ids, deep_before=middle)

    def calls(self) -> Iterator[tuple[str, str, Callable[[], Any]]]:
        ids = iter(self.request_ids * 3)
        yield "support lookup by request id", "lookup", lambda: records_by_request_id(next(ids))
        # What the support page does with them: the explanation adds the key and the billing.
        explained = iter(self.request_ids * 3)
        yield (
            "support lookup with its explanation (records, key, usage)",
            "explained",
            lambda: explain_records(records_by_request_id(next(explained))),
        )
        yield "request list, first page", "list", lambda: self._page(None)
        yield "request list, deep page (half-way)", "list", lambda: self._page(self.deep_before)
        now = timezone.now()
        for group_by in ("day", "model", "key", "member"):
            yield (
                f"30-day usage report by {group_by}",
                "report",
                lambda group_by=group_by: usage_report(self.org, group_by, now - timedelta(days=30), now),
            )
        yield "dashboard data (org_dashboard)", "dashboard", lambda: org_dashboard(self.org)
        client = Client()
        client.force_login(self.owner)
        url = reverse("console:dashboard", kwargs={"slug": self.org.slug})

        def dashboard() -> None:
            response = client.get(url, secure=True)
            assert response.status_code == 200, response.status_code

        yield "dashboard page, rendered for the owner", "dashboard", dashboard

    def _page(self, before: Any) -> list[RequestRecord]:
        """A page as the API and the console page get it: the same selector, a signed cursor."""
        cursor = encode(Position(*before)) if before is not None else None
        return org_requests(self.org, filters=RequestFilters(), cursor=cursor, limit=PAGE).records
