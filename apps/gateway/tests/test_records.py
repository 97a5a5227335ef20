"""Records are never lost: one hostile value cannot stop the writer, and what is stored is clean.

Every value a client or a worker chooses (model, path, error text, token counts) reaches
a request record. Each test sends one such value, then an ordinary request, and asserts
that both records land: before these fixes one bad row put its whole batch back in the
queue forever, so no later record of the process was ever written.
"""

from __future__ import annotations

import json

import httpx
import pytest

from apps.gateway.tests.conftest import Gateway, record_for, usage_for

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}
PG_INT_MAX = 2**31 - 1


def _ordinary_request_lands(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    record = record_for(response.headers["x-request-id"])
    assert record.status == 200
    assert len(usage_for(response.headers["x-request-id"])) == 1


def test_a_model_name_with_a_nul_is_recorded_cleaned_and_later_records_still_land(gateway: Gateway) -> None:
    with gateway.http() as http:
        bad = http.post("/v1/chat/completions", json={**CHAT, "model": "sim-chat\u0000evil"})
        assert bad.status_code == 400
        _ordinary_request_lands(http)
    record = record_for(bad.headers["x-request-id"])
    assert record.status == 400
    assert "\x00" not in record.model and record.model.startswith("sim-chat")
    assert "\x00" not in record.error


def test_a_model_name_with_a_lone_surrogate_is_recorded_and_later_records_still_land(gateway: Gateway) -> None:
    # Valid JSON ("\ud800" is an escape the parser accepts) that no UTF-8 column can hold.
    raw = b'{"model": "sim\\ud800chat", "messages": [{"role": "user", "content": "x"}]}'
    with gateway.http() as http:
        bad = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
        assert bad.status_code == 400
        _ordinary_request_lands(http)
    record = record_for(bad.headers["x-request-id"])
    assert record.model == "sim\ufffdchat"


def test_a_path_with_control_characters_is_recorded_and_later_records_still_land(gateway: Gateway) -> None:
    with gateway.http() as http:
        bad = http.post("/v1/chat%00%01%7f/completions", json=CHAT)
        assert bad.status_code == 404
        _ordinary_request_lands(http)
    record = record_for(bad.headers["x-request-id"])
    assert record.route.startswith("/v1/chat")
    assert not any(ord(char) < 32 or ord(char) == 127 for char in record.route)


def test_an_overlong_path_is_cut_to_its_column(gateway: Gateway) -> None:
    with gateway.http() as http:
        bad = http.post("/v1/" + "é" * 400, json=CHAT)
        assert bad.status_code == 404
        _ordinary_request_lands(http)
    assert len(record_for(bad.headers["x-request-id"]).route) == 200


@pytest.mark.parametrize("reported", [2**70, PG_INT_MAX + 1])
def test_a_worker_reporting_out_of_range_token_counts_does_not_stop_later_records(
    gateway: Gateway, reported: int
) -> None:
    with gateway.http() as http:
        odd = http.post("/v1/chat/completions", json=CHAT, headers={"x-sim-prompt-tokens": str(reported)})
        assert odd.status_code == 200
        _ordinary_request_lands(http)
    record = record_for(odd.headers["x-request-id"])
    assert record.status == 200
    # A number no column can hold is not believed: nothing is billed on it.
    assert record.prompt_tokens is None and record.total_tokens is None
    (usage,) = usage_for(odd.headers["x-request-id"])
    assert usage.total_tokens == 0


def test_a_streamed_worker_reporting_huge_usage_does_not_stop_later_records(gateway: Gateway) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with gateway.http() as http:
        with http.stream("POST", "/v1/chat/completions", json=body, headers={"x-sim-prompt-tokens": str(2**70)}) as odd:
            assert odd.status_code == 200
            events = [line for line in odd.iter_lines() if line.startswith("data: {")]
        assert json.loads(events[-1].removeprefix("data: "))["usage"]["prompt_tokens"] == 2**70
        _ordinary_request_lands(http)
    assert record_for(odd.headers["x-request-id"]).total_tokens is None


def test_an_admin_api_path_with_a_nul_is_recorded(gateway: Gateway) -> None:
    with gateway.http() as http:
        response = http.get("/api/v1/orgs%00evil/")
    assert response.status_code == 404
    record = record_for(response.headers["x-request-id"])
    assert "\x00" not in record.route
