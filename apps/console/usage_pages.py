"""The org's usage (billed successes by day, model, key or member) and its dashboard.

Both read the hourly roll-ups through the selectors the API and the bench call
(:func:`apps.requestlog.selectors.usage_report`, :func:`~apps.requestlog.selectors.org_dashboard`);
members see their own keys' numbers, as in the API. Charts: :mod:`apps.console.charts`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from apps.console.access import OrgPage
from apps.console.charts import Series, column_chart, shares
from apps.console.plan_pages import BUCKETS
from apps.orgs.models import Role, role_at_least
from apps.requestlog import selectors

DEFAULT_DAYS = 30
MAX_DAYS = 366
GROUP_CHOICES = [("day", "Day"), ("model", "Model"), ("key", "API key"), ("member", "Member")]
TOKENS = [Series("prompt tokens", "series-prompt"), Series("completion tokens", "series-completion")]
REQUESTS = [Series("succeeded", "series-ok"), Series("failed", "series-error")]


class UsageForm(forms.Form):
    group_by = forms.ChoiceField(label="Group by", choices=GROUP_CHOICES, initial="day")
    since = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("since", "Must be on or before the end date.")
        elif since and until and (until - since).days >= MAX_DAYS:
            self.add_error("since", f"The range may span at most {MAX_DAYS} days.")
        return data


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _mine_only(page: OrgPage) -> Any:
    return None if role_at_least(page.role, Role.ADMIN) else page.request.user


class UsagePage(OrgPage):
    scope_map = {"GET": Role.MEMBER}

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        today = timezone.now().astimezone(UTC).date()
        defaults = {"group_by": "day", "since": today - timedelta(days=DEFAULT_DAYS - 1), "until": today}
        form = UsageForm({**defaults, **request.GET.dict()} if request.GET else defaults)
        context = self.base_context(form=form, mine_only=_mine_only(self) is not None)
        if form.is_valid():
            data = form.cleaned_data
            since, until = _day_start(data["since"]), _day_start(data["until"] + timedelta(days=1))
            report = selectors.usage_report(self.org, data["group_by"], since, until, member=_mine_only(self))
            query = {"group_by": report.group_by, "since": report.since.isoformat(), "until": report.until.isoformat()}
            api = reverse("org-usage", kwargs={"slug": self.org.slug})
            context.update(
                report=report,
                rows=[
                    {**row, "share": share}
                    for row, share in zip(report.rows, shares([r["total_tokens"] for r in report.rows]), strict=True)
                ],
                chart=self._day_chart(report) if report.group_by == "day" else None,
                csv_url=f"{api}?{urlencode({**query, 'format': 'csv'})}",
                json_url=f"{api}?{urlencode(query)}",
                group_label=dict(GROUP_CHOICES)[report.group_by],
            )
        return render(request, "console/usage/usage.html", context)

    @staticmethod
    def _day_chart(report: selectors.UsageReport) -> Any:
        by_day = {row["day"]: row for row in report.rows}
        first, last = report.since.date(), (report.until - timedelta(seconds=1)).date()
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        points = [
            (
                f"{day:%-d %b}",
                [by_day[day]["prompt_tokens"], by_day[day]["completion_tokens"]] if day in by_day else [0, 0],
            )
            for day in days
        ]
        return column_chart(points, series=TOKENS, title="Tokens per day")


class DashboardPage(OrgPage):
    scope_map = {"GET": Role.MEMBER}

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        dashboard = selectors.org_dashboard(self.org, member=_mine_only(self))
        labels = {bucket.use_key: bucket for bucket in BUCKETS}
        hourly = [
            (f"{row['hour']:%H:00}", [row["requests"] - row["errors"], row["errors"]]) for row in dashboard.hourly
        ]
        daily = [(f"{row['day']:%-d %b}", [row["requests"] - row["errors"], row["errors"]]) for row in dashboard.daily]
        models = dashboard.tokens_by_model
        context = self.base_context(
            dashboard=dashboard,
            mine_only=_mine_only(self) is not None,
            day_totals=_totals(dashboard.hourly),
            month_totals=_totals(dashboard.daily),
            hourly_chart=column_chart(hourly, series=REQUESTS, title="Requests per hour, last 24 hours"),
            daily_chart=column_chart(daily, series=REQUESTS, title="Requests per day, last 30 days"),
            models=[
                {**row, "share": share}
                for row, share in zip(models, shares([m["total_tokens"] for m in models]), strict=True)
            ],
            buckets=[(labels[level.bucket], level) for level in dashboard.buckets if level.bucket in labels],
        )
        return render(request, "console/usage/dashboard.html", context)


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(row["requests"] for row in rows)
    errors = sum(row["errors"] for row in rows)
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": f"{errors * 100 / requests:.1f}" if requests else "0.0",
    }
