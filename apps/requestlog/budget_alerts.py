"""Budget alerts at 50, 80 and 100 %, each once per budget and month, off the request path.

The record writer calls :func:`check_after_write` once a batch of usage rows is committed
(:func:`apps.requestlog.writer.write_records`), so the check runs in the writer (the
in-process recorder's thread, or ``manage.py record_writer``), never in a request. The
spend is read from the usage roll-ups, which that same commit made exact, so the request
that crosses a threshold is counted whichever process wrote it.

An alert is a :class:`apps.plans.models.BudgetAlert` row, unique per budget, month and
threshold: the process whose insert wins sends it (an email to the org's owners and
admins, and the ``budget.threshold`` webhook event); another that raced it gets the
unique violation and sends nothing. A budget crossed by several thresholds at once sends
each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Sum

from apps.orgs.models import Membership, Role
from apps.plans.budgets import THRESHOLDS
from apps.plans.limit_decision import usd_text
from apps.plans.models import Budget, BudgetAlert
from apps.plans.pricing import period_of
from apps.requestlog.models import UsageRollup
from apps.webhooks.services import emit_event

logger = logging.getLogger("pendra.budgets")

EVENT = "budget.threshold"


def check_after_write(usage_rows: Iterable[Mapping[str, Any]]) -> None:
    """After the writer's commit: check the budgets of the orgs that just spent something."""
    org_ids = {row["org_id"] for row in usage_rows if row.get("org_id") and Decimal(str(row.get("cost") or 0)) > 0}
    if not org_ids:
        return
    try:
        check_budgets(org_ids=org_ids)
    except Exception:
        # An alert must never cost a record: the next batch of the org checks again.
        logger.exception("budget alerts could not be checked for orgs %s", sorted(org_ids))


def check_budgets(*, org_ids: Iterable[int], now: datetime | None = None) -> int:
    """Send each threshold the orgs' budgets crossed this month and have not sent yet; returns how many."""
    now = now or datetime.now(UTC)
    period = period_of(now)
    month_start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    sent = 0
    for budget in Budget.objects.filter(org_id__in=list(org_ids)).select_related("org", "api_key"):
        spend = UsageRollup.objects.filter(org_id=budget.org_id, hour__gte=month_start)
        if budget.api_key_id is not None:
            spend = spend.filter(api_key_id=budget.api_key_id)
        spent = spend.aggregate(total=Sum("cost"))["total"] or Decimal(0)
        crossed = [t for t in THRESHOLDS if spent * 100 >= budget.monthly_usd * t]
        if not crossed:
            continue
        done = set(BudgetAlert.objects.filter(budget=budget, period=period).values_list("threshold", flat=True))
        for threshold in crossed:
            if threshold not in done and _send_once(budget, period, threshold, spent):
                sent += 1
    return sent


def _send_once(budget: Budget, period: str, threshold: int, spent: Decimal) -> bool:
    try:
        with transaction.atomic():
            BudgetAlert.objects.create(budget=budget, period=period, threshold=threshold, spent=spent)
            emit_event(org=budget.org, event=EVENT, data=_event_data(budget, period, threshold, spent))
    except IntegrityError:
        return False  # another process recorded it first, and sends it
    recipients = list(
        Membership.objects.filter(org=budget.org, role__in=[Role.OWNER, Role.ADMIN], user__is_active=True)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    subject, body = _message(budget, period, threshold, spent)
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    except Exception:
        logger.exception("the %d%% budget alert email of %s could not be sent", threshold, budget.org.slug)
    return True


def _whose(budget: Budget) -> str:
    if budget.api_key is None:
        return budget.org.name
    return f'API key "{budget.api_key.name}" ({budget.api_key.prefix}) of {budget.org.name}'


def _event_data(budget: Budget, period: str, threshold: int, spent: Decimal) -> dict[str, Any]:
    return {
        "org": budget.org.slug,
        "key_id": budget.api_key_id,
        "key_prefix": budget.api_key.prefix if budget.api_key is not None else None,
        "period": period,
        "threshold": threshold,
        "monthly_usd": str(budget.monthly_usd),
        "spent_usd": str(spent),
        "hard": budget.hard,
    }


def _message(budget: Budget, period: str, threshold: int, spent: Decimal) -> tuple[str, str]:
    whose = _whose(budget)
    subject = f"[Pendra] {whose} has used {threshold}% of its {period} budget"
    if budget.hard and threshold >= 100:
        effect = 'Requests are now refused (429, bucket "budget") until the month ends or the budget is raised.'
    elif budget.hard:
        effect = 'At 100 % requests will be refused (429, bucket "budget") until the month ends.'
    else:
        effect = "This is a soft budget: requests are not refused."
    body = (
        f"{whose} has spent {usd_text(spent)} of its monthly budget of {usd_text(budget.monthly_usd)} "
        f"in {period} (UTC).\n\n{effect}\n\nOwners and admins change budgets on the organisation's "
        "and the key's pages in the console, or with PUT /api/v1/orgs/<slug>/budget/.\n"
    )
    return subject, body
