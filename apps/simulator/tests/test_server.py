"""The simulator answers as OpenAI clients expect, and every fault knob behaves.

The pinned ``openai`` package talks straight to a simulator; raw HTTP (httpx) checks the
wire details the SDK hides (SSE framing, status codes, resets, headers).
"""

from __future__ import annotations

import base64
import io
import struct
import time
import wave

import httpx
import openai
import pytest

from testing.workers import Sim, SimFactory

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "three words here"}]}


def _client(sim: Sim, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key="sk-sim", max_retries=0, timeout=10, **kwargs)


def _sse_events(body: bytes) -> list[str]:
    assert body.endswith(b"data: [DONE]\n\n")
    return [block.removeprefix(b"data: ").decode() for block in body.split(b"\n\n") if block]


# --- what OpenAI clients see --------------------------------------------------------------------


def test_health_and_models_list_every_served_model(simulator: SimFactory) -> None:
    sim = simulator("sim-a")

    assert httpx.get(f"{sim.url}/health").json() == {"status": "ok", "name": "sim-a"}
    models = {model.id for model in _client(sim).models.list()}
    assert models == {"sim-chat", "sim-embed", "sim-image", "sim-whisper", "sim-tts"}


def test_chat_completion_counts_prompt_words_and_defaults_to_16_completion_tokens(simulator: SimFactory) -> None:
    sim = simulator()

    completion = _client(sim).chat.completions.create(
        model="sim-chat",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there world"}],
    )

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert len(completion.choices[0].message.content.split()) == 16
    assert completion.usage.prompt_tokens == 5
    assert completion.usage.completion_tokens == 16
    assert completion.usage.total_tokens == 21


def test_chat_completion_honours_max_tokens(simulator: SimFactory) -> None:
    sim = simulator()

    completion = _client(sim).chat.completions.create(**CHAT, max_tokens=5)

    assert len(completion.choices[0].message.content.split()) == 5
    assert completion.usage.completion_tokens == 5


def test_streamed_chat_yields_chunks_and_a_usage_chunk_when_asked(simulator: SimFactory) -> None:
    sim = simulator()

    chunks = list(
        _client(sim).chat.completions.create(**CHAT, max_tokens=4, stream=True, stream_options={"include_usage": True})
    )

    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert len(text.split()) == 4
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 4)
    # The server counts the stream once its last write returns, which may be just after the client read it.
    deadline = time.monotonic() + 2
    while sim.stats()["completed_streams"] != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sim.stats()["completed_streams"] == 1


def test_streamed_chat_without_include_usage_has_no_usage_chunk(simulator: SimFactory) -> None:
    sim = simulator()

    body = httpx.post(f"{sim.url}/v1/chat/completions", json={**CHAT, "stream": True, "max_tokens": 2}).content

    events = _sse_events(body)
    assert events[-1] == "[DONE]"
    assert all('"usage"' not in event for event in events)
    assert len(events) == 1 + 2 + 1 + 1  # role, two words, finish, [DONE]


def test_embeddings_are_deterministic_8_dim_vectors_for_a_string_or_a_list(simulator: SimFactory) -> None:
    client = _client(simulator())

    one = client.embeddings.create(model="sim-embed", input="hello world")
    many = client.embeddings.create(model="sim-embed", input=["hello world", "another text here"])
    as_floats = client.embeddings.create(model="sim-embed", input="hello world", encoding_format="float")

    assert len(one.data[0].embedding) == 8
    assert one.usage.prompt_tokens == 2
    assert [d.index for d in many.data] == [0, 1]
    assert many.usage.prompt_tokens == 5
    assert many.data[0].embedding == pytest.approx(one.data[0].embedding, abs=1e-6)
    assert as_floats.data[0].embedding == pytest.approx(one.data[0].embedding, abs=1e-6)
    assert many.data[1].embedding != many.data[0].embedding


@pytest.mark.parametrize("response_format", ["b64_json", "url"])
def test_image_generation_returns_a_real_png(simulator: SimFactory, response_format: str) -> None:
    image = _client(simulator()).images.generate(
        model="sim-image", prompt="a red cube", n=2, response_format=response_format
    )

    assert len(image.data) == 2
    for item in image.data:
        encoded = item.b64_json if response_format == "b64_json" else item.url.removeprefix("data:image/png;base64,")
        png = base64.b64decode(encoded)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert struct.unpack(">II", png[16:24]) == (8, 8)


def test_transcription_takes_a_multipart_file(simulator: SimFactory) -> None:
    audio = io.BytesIO(b"RIFF" + b"\x00" * 2044)
    audio.name = "clip.wav"

    transcript = _client(simulator()).audio.transcriptions.create(model="sim-whisper", file=audio)

    assert transcript.text == "simulated transcript of 2048 bytes from clip.wav"


def test_speech_returns_a_real_wav(simulator: SimFactory) -> None:
    response = _client(simulator()).audio.speech.create(model="sim-tts", voice="alloy", input="say these words")

    assert response.response.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(response.content)) as audio:
        assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (1, 2, 8000)
        assert audio.getnframes() > 0


def test_an_unknown_model_is_an_openai_404(simulator: SimFactory) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        _client(simulator()).chat.completions.create(model="gpt-nope", messages=CHAT["messages"])

    assert caught.value.body["code"] == "model_not_found"


def test_malformed_json_is_an_openai_400(simulator: SimFactory) -> None:
    response = httpx.post(f"{simulator().url}/v1/chat/completions", content=b"{nope")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_stats_record_request_ids_and_whether_authorization_came(simulator: SimFactory) -> None:
    sim = simulator()

    httpx.post(f"{sim.url}/v1/embeddings", json={"model": "sim-embed", "input": "x"}, headers={"x-request-id": "req_1"})
    httpx.post(
        f"{sim.url}/v1/embeddings",
        json={"model": "sim-embed", "input": "x"},
        headers={"x-request-id": "req_2", "authorization": "Bearer k"},
    )

    stats = httpx.get(f"{sim.url}/_sim/stats").json()
    assert stats["requests"] == {"/v1/embeddings": 2}
    assert [(r["request_id"], r["authorization"]) for r in stats["recent"]] == [("req_1", False), ("req_2", True)]


# --- fault knobs ----------------------------------------------------------------------------------


def test_latency_header_delays_the_answer(simulator: SimFactory) -> None:
    sim = simulator()

    started = time.monotonic()
    response = httpx.post(f"{sim.url}/v1/chat/completions", json=CHAT, headers={"x-sim-latency-ms": "300"})

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_ttft_delays_the_first_token_but_not_the_headers(simulator: SimFactory) -> None:
    sim = simulator()
    httpx.post(f"{sim.url}/v1/chat/completions", json=CHAT)  # warm: the first request pays for imports

    started = time.monotonic()
    with httpx.stream(
        "POST", f"{sim.url}/v1/chat/completions", json={**CHAT, "stream": True}, headers={"x-sim-ttft-ms": "1500"}
    ) as response:
        headers_after = time.monotonic() - started
        first = next(response.iter_raw())
        first_after = time.monotonic() - started

    # A wide gap, so a loaded machine's scheduling delay cannot blur headers-first into token-first.
    assert headers_after < 1.0
    assert first_after >= 1.5
    assert first.startswith(b"data: ")


def test_chunk_delay_spreads_a_stream_out(simulator: SimFactory) -> None:
    sim = simulator(chunk_delay_ms=50)

    started = time.monotonic()
    httpx.post(f"{sim.url}/v1/chat/completions", json={**CHAT, "stream": True, "max_tokens": 5})

    assert time.monotonic() - started >= 0.05 * 6  # role, 5 words, finish: 6 gaps


def test_hang_never_answers(simulator: SimFactory) -> None:
    sim = simulator()

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{sim.url}/v1/chat/completions", json=CHAT, headers={"x-sim-hang": "1"}, timeout=0.5)

    deadline = time.monotonic() + 2
    while sim.stats()["disconnects"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.stats()["disconnects"] == 1


@pytest.mark.parametrize("status", [500, 503])
def test_status_header_answers_that_status(simulator: SimFactory, status: int) -> None:
    response = httpx.post(f"{simulator().url}/v1/chat/completions", json=CHAT, headers={"x-sim-status": str(status)})

    assert response.status_code == status
    assert "simulated upstream failure" in response.text


def test_error_envelope_header_answers_an_openai_envelope(simulator: SimFactory) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _client(simulator()).chat.completions.create(**CHAT, extra_headers={"x-sim-error-envelope": "400"})

    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": "Simulated error from the worker.",
        "type": "invalid_request_error",
        "param": None,
        "code": "sim_error",
    }


def test_reset_after_aborts_the_stream_after_n_chunks(simulator: SimFactory) -> None:
    sim = simulator()
    received: list[bytes] = []

    with (
        pytest.raises(httpx.TransportError),
        httpx.stream(
            "POST", f"{sim.url}/v1/chat/completions", json={**CHAT, "stream": True}, headers={"x-sim-reset-after": "3"}
        ) as response,
    ):
        received.extend(line.encode() for line in response.iter_lines() if line)

    assert len(received) == 3
    assert sim.stats()["resets"] == 1
    assert sim.stats()["completed_streams"] == 0


def test_reset_on_a_plain_request_drops_the_connection_before_any_byte(simulator: SimFactory) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{simulator().url}/v1/embeddings", json={"model": "sim-embed", "input": "x"},
                   headers={"x-sim-reset-after": "0"})  # fmt: skip


def test_garbage_header_answers_200_with_a_body_that_is_not_json(simulator: SimFactory) -> None:
    response = httpx.post(f"{simulator().url}/v1/chat/completions", json=CHAT, headers={"x-sim-garbage": "1"})

    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_sim_only_limits_a_header_fault_to_the_named_simulator(simulator: SimFactory) -> None:
    sim_a, sim_b = simulator("sim-a"), simulator("sim-b")
    headers = {"x-sim-status": "500", "x-sim-only": "sim-a"}

    assert httpx.post(f"{sim_a.url}/v1/chat/completions", json=CHAT, headers=headers).status_code == 500
    assert httpx.post(f"{sim_b.url}/v1/chat/completions", json=CHAT, headers=headers).status_code == 200


def test_instance_faults_set_at_runtime_apply_to_every_request_until_cleared(simulator: SimFactory) -> None:
    sim = simulator()

    set_response = httpx.post(f"{sim.url}/_sim/faults", json={"status": 503, "health_status": 503})
    failing = [
        httpx.post(f"{sim.url}/v1/chat/completions", json=CHAT).status_code,
        httpx.get(f"{sim.url}/health").status_code,
    ]
    httpx.post(f"{sim.url}/_sim/faults", json={})
    healed = [
        httpx.post(f"{sim.url}/v1/chat/completions", json=CHAT).status_code,
        httpx.get(f"{sim.url}/health").status_code,
    ]

    assert set_response.json()["status"] == 503
    assert failing == [503, 503]
    assert healed == [200, 200]


def test_an_unknown_instance_fault_is_refused(simulator: SimFactory) -> None:
    response = httpx.post(f"{simulator().url}/_sim/faults", json={"explode": True})

    assert response.status_code == 400
    assert "explode" in response.json()["detail"]


def test_a_client_disconnect_mid_stream_is_seen_within_a_second(simulator: SimFactory) -> None:
    sim = simulator(chunk_delay_ms=200)

    with httpx.stream("POST", f"{sim.url}/v1/chat/completions", json={**CHAT, "stream": True, "max_tokens": 50}) as r:
        next(r.iter_raw())
    closed_at = time.monotonic()
    while sim.stats()["disconnects"] < 1 and time.monotonic() - closed_at < 1:
        time.sleep(0.01)

    assert sim.stats()["disconnects"] == 1
    assert sim.stats()["completed_streams"] == 0


def test_a_stopped_simulator_refuses_connections_and_restarts_on_the_same_port(simulator: SimFactory) -> None:
    sim = simulator()
    port = sim.port

    sim.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{sim.url}/health")
    sim.restart()

    assert sim.port == port
    assert httpx.get(f"{sim.url}/health").status_code == 200
