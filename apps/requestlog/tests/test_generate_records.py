"""``manage.py generate_records``: bulk history that looks like a fleet's, written as the gateway writes it."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.utils import timezone

from apps.keys.models import ApiKey
from apps.orgs.models import Membership, Organisation
from apps.plans.pricing import cost_of, price_for
from apps.plans.selectors import plan_for_org
from apps.requestlog.models import RequestRecord, UsageRecord
from apps.workers.models import Worker, WorkerState

pytestmark = pytest.mark.django_db


def _generate(**options: object) -> str:
    out = StringIO()
    call_command("generate_records", stdout=out, **options)
    return out.getvalue()


def test_it_writes_the_records_asked_for_and_bills_only_the_successes() -> None:
    output = _generate(count=1500, orgs=4, workers=3, batch_size=400)

    assert "Wrote 1,500 request records across 4 organisations" in output
    assert RequestRecord.objects.count() == 1500
    statuses = Counter(RequestRecord.objects.values_list("status", flat=True))
    assert set(statuses) >= {200, 429, 502}, statuses
    assert statuses[200] > 0.85 * 1500
    # Exactly the successes are billed, each once and with the tokens its record shows.
    usage = {row.request_uid: row for row in UsageRecord.objects.all()}
    successes = RequestRecord.objects.filter(status=200)
    assert set(usage) == set(successes.values_list("uid", flat=True))
    for record in successes.exclude(total_tokens=None)[:200]:
        assert usage[record.uid].total_tokens == record.total_tokens
        assert usage[record.uid].org_id == record.org_id


def test_each_success_costs_its_tokens_at_the_org_plans_prices() -> None:
    _generate(count=400, orgs=2, workers=2)

    prices = {org.pk: plan_for_org(org.pk).prices for org in Organisation.objects.filter(slug__startswith="synthetic-")}
    usages = list(UsageRecord.objects.filter(model="llama-3.1-8b-instruct"))
    assert usages
    for usage in usages:
        price = price_for(prices[usage.org_id], kind="chat", model=usage.model)
        expected = cost_of(price, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, units=0)
        assert usage.cost == expected > 0


def test_records_spread_over_the_days_asked_for_without_piling_on_one_instant() -> None:
    before = timezone.now()
    _generate(count=2000, orgs=2, workers=2, days=10)

    stamps = list(RequestRecord.objects.values_list("created_at", flat=True))
    assert before - timedelta(days=11) < min(stamps) and max(stamps) <= timezone.now()
    assert max(Counter(stamps).values()) <= 2
    assert len({stamp.date() for stamp in stamps}) >= 10


def test_failures_carry_what_their_explanation_needs() -> None:
    _generate(count=1500, orgs=2, workers=3)

    for record in RequestRecord.objects.filter(status=429)[:20]:
        assert record.limit_bucket and record.limit_plan and record.limit_reset_s
    for record in RequestRecord.objects.filter(status=502)[:20]:
        assert record.worker_trail and all(step["worker"].startswith("synthetic-gpu-") for step in record.worker_trail)
    for record in RequestRecord.objects.filter(status=504)[:20]:
        assert record.timeout and record.timeout_s
    assert not RequestRecord.objects.filter(status=401, api_key__isnull=False).exists()


def test_orgs_members_and_workers_are_made_once_and_reused() -> None:
    _generate(count=200, orgs=3, workers=2)
    _generate(count=300, orgs=3, workers=2, seed=2)

    assert RequestRecord.objects.count() == 500
    orgs = Organisation.objects.filter(slug__startswith="synthetic-")
    assert orgs.count() == 3
    assert set(
        Membership.objects.filter(org__in=orgs).values("org").annotate(n=Count("id")).values_list("n", flat=True)
    ) == {3}
    assert ApiKey.objects.filter(org__in=orgs).count() == 9
    # The gateway must never route real traffic to a worker that does not exist.
    workers = Worker.objects.filter(name__startswith="synthetic-gpu-")
    assert workers.count() == 2
    assert set(workers.values_list("state", flat=True)) == {WorkerState.DISABLED}
    # Busier organisations first: the traffic is skewed, as on a shared platform.
    per_org = sorted(
        RequestRecord.objects.exclude(org=None).values("org").annotate(n=Count("id")).values_list("n", flat=True)
    )
    assert per_org[-1] > per_org[0]


@pytest.mark.parametrize("options", [{"count": 0}, {"count": 10, "orgs": 0}, {"count": 10, "workers": 1}])
def test_bad_arguments_are_refused_and_write_nothing(options: dict[str, int]) -> None:
    with pytest.raises(CommandError):
        _generate(**options)
    assert not RequestRecord.objects.exists()
