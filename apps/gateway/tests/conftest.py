"""A live gateway (uvicorn) with two simulated GPU workers and the owner's OpenAI client."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from apps.requestlog.models import RequestRecord, UsageRecord


@dataclass
class Gateway:
    url: str
    key: str
    sims: list[Any]
    actor: Any

    def openai(self, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.key, max_retries=0, **options)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)


@pytest.fixture
def gateway(live: Any, owner: Any, simulator: Any, register_sim: Callable[[Any], Any]) -> Gateway:
    sims = [simulator("sim-a"), simulator("sim-b")]
    for sim in sims:
        register_sim(sim)
    return Gateway(url=live.url, key=owner.key, sims=sims, actor=owner)


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll until ``condition()`` is truthy: records are written off the request path."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def record_for(request_id: str) -> RequestRecord:
    record = wait_for(lambda: RequestRecord.objects.filter(request_id=request_id).first())
    assert record is not None, f"no request record for {request_id}"
    return record


def usage_for(request_id: str) -> list[UsageRecord]:
    # Give the writer a moment so a missing usage row is not just a late one.
    time.sleep(0.3)
    return list(UsageRecord.objects.filter(request_id=request_id))


CHAT_WITH_ID = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}


def call_with_id(
    gateway: Gateway,
    request_id: str,
    *,
    key: str | None = None,
    path: str = "/v1/chat/completions",
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST under a client's own X-Request-Id and wait for its record (written off the request path)."""
    with gateway.http() as http:
        if key is not None:
            http.headers["Authorization"] = f"Bearer {key}"
        response = http.post(path, json=body or CHAT_WITH_ID, headers={"X-Request-Id": request_id, **(headers or {})})
    assert response.headers["x-request-id"] == request_id
    record_for(request_id)
    return response
