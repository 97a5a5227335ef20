"""The rate-limit core, through the functions the gateway and the admin API call."""

from __future__ import annotations

import logging
import time

import pytest

from apps.plans import limits
from apps.plans.limits import admit, admit_api, settle
from apps.plans.selectors import plan_cache
from apps.plans.services import subscription_change
from apps.plans.tests.factories import org_factory, plan_factory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_plan_cache() -> None:
    plan_cache.clear()
    limits.outage.down = False


def test_requests_over_the_plan_limit_are_refused_naming_bucket_limit_plan_and_reset() -> None:
    org = org_factory(plan=plan_factory(name="Tiny", chat_rpm=3))

    allowed = [admit(org_id=org.pk, kind="chat", streaming=False) for _ in range(3)]
    refused = admit(org_id=org.pk, kind="chat", streaming=False)

    assert [a.allowed for a in allowed] == [True, True, True]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in allowed] == ["2", "1", "0"]
    assert refused.allowed is False
    assert refused.bucket == "chat"
    assert refused.detail.startswith(
        'Rate limit exceeded for bucket "chat" (3 requests/minute on plan Tiny); retry in '
    )
    assert refused.detail.endswith(f"retry in {refused.retry_after} s")
    assert 1 <= refused.retry_after <= 60
    assert refused.headers["Retry-After"] == str(refused.retry_after)
    assert refused.headers["x-ratelimit-bucket"] == "chat"
    assert refused.headers["x-ratelimit-limit-requests"] == "3"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"] == f"{refused.retry_after}s"


def test_each_bucket_counts_separately_and_per_org() -> None:
    plan = plan_factory(chat_rpm=1, embeddings_rpm=1)
    org, other = org_factory(plan=plan), org_factory(plan=plan)

    assert admit(org_id=org.pk, kind="chat", streaming=False).allowed
    assert admit(org_id=org.pk, kind="embeddings", streaming=False).allowed
    assert admit(org_id=other.pk, kind="chat", streaming=False).allowed
    assert not admit(org_id=org.pk, kind="chat", streaming=False).allowed


def test_an_org_without_a_subscription_starts_on_team() -> None:
    org = org_factory()

    admission = admit(org_id=org.pk, kind="images", streaming=False)

    assert admission.headers["x-ratelimit-limit-requests"] == "100"
    assert org.subscription.plan.slug == "team"


def test_tokens_reported_after_success_refuse_the_next_request_once_the_minute_is_used_up() -> None:
    org = org_factory(plan=plan_factory(name="Tiny", chat_tpm=100))

    first = admit(org_id=org.pk, kind="chat", streaming=False)
    settle(org_id=org.pk, kind="chat", tokens=60, admission=first)
    second = admit(org_id=org.pk, kind="chat", streaming=False)
    settle(org_id=org.pk, kind="chat", tokens=60, admission=second)
    third = admit(org_id=org.pk, kind="chat", streaming=False)

    assert first.headers["x-ratelimit-remaining-tokens"] == "100"
    assert second.allowed and second.headers["x-ratelimit-remaining-tokens"] == "40"
    assert third.allowed is False
    assert third.bucket == "chat_tokens"
    assert third.detail.startswith('Rate limit exceeded for bucket "chat_tokens" (100 tokens/minute on plan Tiny)')
    assert third.headers["x-ratelimit-remaining-tokens"] == "0"
    assert third.headers["x-ratelimit-bucket"] == "chat_tokens"


def test_images_and_audio_carry_no_token_headers() -> None:
    org = org_factory()

    assert "x-ratelimit-limit-tokens" not in admit(org_id=org.pk, kind="images", streaming=False).headers


def test_concurrent_streams_are_capped_and_released_on_settle() -> None:
    org = org_factory(plan=plan_factory(name="Tiny", concurrent_streams=2))

    opened = [admit(org_id=org.pk, kind="chat", streaming=True) for _ in range(2)]
    third = admit(org_id=org.pk, kind="chat", streaming=True)
    settle(org_id=org.pk, kind="chat", tokens=0, admission=opened[0])
    after_release = admit(org_id=org.pk, kind="chat", streaming=True)

    assert all(a.allowed for a in opened)
    assert third.allowed is False
    assert third.bucket == "streams"
    assert third.detail == (
        'Rate limit exceeded for bucket "streams" (2 concurrent streams on plan Tiny); retry when one of them ends'
    )
    assert after_release.allowed


def test_a_refused_stream_does_not_hold_a_slot() -> None:
    org = org_factory(plan=plan_factory(concurrent_streams=1))

    held = admit(org_id=org.pk, kind="chat", streaming=True)
    for _ in range(3):
        admit(org_id=org.pk, kind="chat", streaming=True)
    settle(org_id=org.pk, kind="chat", tokens=0, admission=held)

    assert admit(org_id=org.pk, kind="chat", streaming=True).allowed


def test_the_next_request_after_a_plan_change_counts_against_the_new_limit() -> None:
    org = org_factory(plan=plan_factory(chat_rpm=1))
    bigger = plan_factory(name="Bigger", chat_rpm=5)
    admit(org_id=org.pk, kind="chat", streaming=False)
    assert not admit(org_id=org.pk, kind="chat", streaming=False).allowed

    subscription_change(org=org, plan=bigger, actor=None)
    admission = admit(org_id=org.pk, kind="chat", streaming=False)

    assert admission.allowed
    assert admission.headers["x-ratelimit-limit-requests"] == "5"


def test_the_admin_api_bucket_counts_per_org_key_and_per_session_user() -> None:
    org = org_factory(plan=plan_factory(name="Tiny", api_rpm=1))

    assert admit_api(org_id=org.pk, user_id=1).allowed
    refused = admit_api(org_id=org.pk, user_id=2)
    session = admit_api(org_id=None, user_id=1)

    assert refused.allowed is False
    assert refused.bucket == "api"
    assert refused.detail.startswith('Rate limit exceeded for bucket "api" (1 requests/minute on plan Tiny)')
    assert session.allowed
    assert session.headers["x-ratelimit-limit-requests"] == "1200"


def test_an_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown request kind"):
        admit(org_id=1, kind="video", streaming=False)


def test_request_token_and_stream_buckets_fail_open_and_log_once_while_the_cache_is_down(
    stoppable_redis, caplog: pytest.LogCaptureFixture
) -> None:
    org = org_factory(plan=plan_factory(chat_rpm=1, concurrent_streams=1))
    assert admit(org_id=org.pk, kind="chat", streaming=False).allowed
    assert not admit(org_id=org.pk, kind="chat", streaming=False).allowed
    stoppable_redis.terminate()
    stoppable_redis.wait(timeout=10)

    with caplog.at_level(logging.ERROR, logger="pendra.limits"):
        during = [admit(org_id=org.pk, kind="chat", streaming=True) for _ in range(5)]
        settle(org_id=org.pk, kind="chat", tokens=10, admission=during[0])
        api = admit_api(org_id=org.pk, user_id=1)

    assert all(a.allowed for a in during)
    assert api.allowed
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "Rate-limit cache unreachable" in errors[0].getMessage()
    assert "NOT enforced" in errors[0].getMessage()


@pytest.mark.parametrize("cache_kind", ["redis", "local memory"])
def test_a_stream_that_ends_after_its_lease_lapsed_does_not_free_another_streams_slot(
    cache_kind: str, settings, request: pytest.FixtureRequest
) -> None:
    if cache_kind == "redis":
        request.getfixturevalue("redis_required")
    else:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "t"}}
    settings.PENDRA_STREAM_LEASE_SECONDS = 1
    org = org_factory(plan=plan_factory(concurrent_streams=1))
    lapsed = admit(org_id=org.pk, kind="chat", streaming=True)
    time.sleep(2.1)  # never renewed (its process died, say): its slot comes back
    current = admit(org_id=org.pk, kind="chat", streaming=True)

    settle(org_id=org.pk, kind="chat", tokens=0, admission=lapsed)

    assert current.allowed
    assert not admit(org_id=org.pk, kind="chat", streaming=True).allowed
