"""A /v1 access line as JSON (PENDRA_LOG_FORMAT=json): request, org, key and worker ids, never the key."""

from __future__ import annotations

import json
import logging

import pytest

from apps.gateway.tests.conftest import Gateway, wait_for
from pendra_console.logging import JsonFormatter
from pendra_console.request_id import RequestIdLogFilter

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}


def _json_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    formatter, request_ids = JsonFormatter(), RequestIdLogFilter()
    lines = []
    for record in caplog.records:
        if record.name == "pendra.access":
            request_ids.filter(record)
            lines.append(json.loads(formatter.format(record)))
    return lines


def test_the_access_line_names_request_org_key_and_worker_but_never_the_key(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pendra.access")
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200

    # The line is written when the response is over, after its last byte left: wait for it.
    [line] = wait_for(lambda: [line for line in _json_lines(caplog) if line.get("path") == "/v1/chat/completions"])
    assert line["request_id"] == response.headers["X-Request-Id"]
    assert line["org_id"] == gateway.actor.org.pk
    assert line["key_id"] == gateway.actor.api_key.pk
    assert line["worker_id"] == response.headers["X-Worker-Id"]
    assert line["status"] == 200
    assert gateway.key not in json.dumps(line)
