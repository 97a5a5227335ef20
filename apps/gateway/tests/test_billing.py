"""Billing: only successes, exactly once each, with the worker's reported tokens."""

from __future__ import annotations

import pytest

from apps.gateway.tests.conftest import Gateway, wait_for
from apps.requestlog.models import RequestRecord, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)


def test_n_successes_m_failures_and_k_retries_bill_exactly_the_successes(gateway: Gateway) -> None:
    successes, failures, retries = 5, 3, 2
    reported_total = 0
    with gateway.http() as http:
        for index in range(successes):
            body = {
                "model": "sim-chat",
                "messages": [{"role": "user", "content": "word " * (index + 1)}],
                "max_tokens": 2 + index,
            }
            response = http.post("/v1/chat/completions", json=body)
            assert response.status_code == 200
            reported_total += response.json()["usage"]["total_tokens"]
        for _ in range(failures):
            response = http.post(
                "/v1/chat/completions",
                json={"model": "sim-chat", "messages": [{"role": "user", "content": "x"}]},
                headers={"x-sim-status": "500"},
            )
            assert response.status_code == 502
        # A client retrying a failed request with the same request id: the failure is not billed,
        # the successful retry is billed once.
        for attempt in range(retries):
            request_id = f"client-retry-{attempt:02d}-0123456789"
            failed = http.post(
                "/v1/chat/completions",
                json={"model": "sim-chat", "messages": [{"role": "user", "content": "retry me"}], "max_tokens": 3},
                headers={"x-request-id": request_id, "x-sim-status": "500"},
            )
            assert failed.status_code == 502
            succeeded = http.post(
                "/v1/chat/completions",
                json={"model": "sim-chat", "messages": [{"role": "user", "content": "retry me"}], "max_tokens": 3},
                headers={"x-request-id": request_id},
            )
            assert succeeded.status_code == 200
            reported_total += succeeded.json()["usage"]["total_tokens"]

    expected_requests = successes + failures + 2 * retries
    wait_for(lambda: RequestRecord.objects.filter(route="/v1/chat/completions").count() >= expected_requests)
    assert RequestRecord.objects.filter(route="/v1/chat/completions").count() == expected_requests
    usage = UsageRecord.objects.all()
    assert usage.count() == successes + retries
    assert sum(row.total_tokens for row in usage) == reported_total
