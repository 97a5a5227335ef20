"""The official OpenAI Python SDK against a live gateway and simulated workers."""

from __future__ import annotations

import base64
import io
import time
import wave

import openai
import pytest

from apps.gateway.tests.conftest import Gateway, record_for, usage_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_chat_completion_is_served_and_billed_once(gateway: Gateway) -> None:
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model="sim-chat", messages=[{"role": "user", "content": "Say hello to the world"}], max_tokens=5
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens == 5
    request_id = raw.headers["x-request-id"]
    assert raw.headers["x-worker-name"] in {"sim-a", "sim-b"}
    record = record_for(request_id)
    assert (record.status, record.model, record.attempts) == (200, "sim-chat", 1)
    assert str(record.worker_id) == raw.headers["x-worker-id"]
    [usage] = usage_for(request_id)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        completion.usage.prompt_tokens,
        5,
        completion.usage.total_tokens,
    )


def test_streamed_chunks_arrive_before_the_worker_finishes(gateway: Gateway) -> None:
    client = gateway.openai()
    started = time.monotonic()
    arrivals = []
    with client.chat.completions.create(
        model="sim-chat",
        messages=[{"role": "user", "content": "count slowly"}],
        max_tokens=6,
        stream=True,
        extra_headers={"x-sim-chunk-delay-ms": "150"},
    ) as stream:
        text = []
        for chunk in stream:
            arrivals.append(time.monotonic() - started)
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
    assert len(text) == 6
    # The first chunk reached us long before the last one was generated.
    assert arrivals[0] < arrivals[-1] - 0.5


def test_a_stream_is_billed_with_the_workers_usage_even_when_the_client_did_not_ask_for_it(
    gateway: Gateway,
) -> None:
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model="sim-chat", messages=[{"role": "user", "content": "one two three"}], max_tokens=4, stream=True
    )
    chunks = list(raw.parse())
    assert all(chunk.usage is None for chunk in chunks)
    [usage] = usage_for(raw.headers["x-request-id"])
    assert (usage.prompt_tokens, usage.completion_tokens) == (3, 4)


def test_a_stream_with_include_usage_reports_it_to_the_client(gateway: Gateway) -> None:
    stream = gateway.openai().chat.completions.create(
        model="sim-chat",
        messages=[{"role": "user", "content": "one two three"}],
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    usages = [chunk.usage for chunk in stream if chunk.usage]
    assert [(u.prompt_tokens, u.completion_tokens) for u in usages] == [(3, 4)]


def test_embeddings(gateway: Gateway) -> None:
    result = gateway.openai().embeddings.create(model="sim-embed", input=["alpha beta", "gamma"])
    assert len(result.data) == 2
    assert len(result.data[0].embedding) == 8
    assert result.usage.prompt_tokens == 3


def test_image_generation_returns_a_real_png(gateway: Gateway) -> None:
    result = gateway.openai().images.generate(model="sim-image", prompt="a red square", response_format="b64_json")
    png = base64.b64decode(result.data[0].b64_json)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def _wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x00\x00" * 800)
    return buffer.getvalue()


def test_transcription(gateway: Gateway) -> None:
    result = gateway.openai().audio.transcriptions.create(
        model="sim-whisper", file=("hello.wav", _wav_bytes(), "audio/wav")
    )
    assert result.text


def test_models_lists_what_the_fleet_serves(gateway: Gateway) -> None:
    names = {model.id for model in gateway.openai().models.list()}
    assert {"sim-chat", "sim-embed", "sim-image", "sim-whisper", "sim-tts"} <= names


def test_bad_request_error_carries_the_detail(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai().chat.completions.create(model="sim-chat", messages=[], max_tokens=5)
    assert '"messages" must be a non-empty array.' in str(caught.value)
    assert caught.value.body["param"] == "messages"


def test_unknown_model_is_a_400_naming_it(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.openai().chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "hi"}])
    assert 'Unknown model "gpt-nope"' in str(caught.value)


def test_authentication_error_carries_the_detail(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="pnd_not-a-real-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()
    assert "Invalid or expired token" in str(caught.value)


def test_not_found_error_carries_the_detail(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        gateway.openai().models.retrieve("no-such-model")
    assert 'Model "no-such-model" not found' in str(caught.value)


def test_bad_gateway_error_when_every_worker_fails(gateway: Gateway) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        gateway.openai().chat.completions.create(
            model="sim-chat",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-sim-status": "500"},
        )
    assert caught.value.status_code == 502
    assert "The GPU worker failed" in str(caught.value)


def test_timeout_error_names_the_limit(gateway: Gateway, settings) -> None:
    settings.PENDRA_CHAT_IDLE_TIMEOUT = 0.5
    with pytest.raises(openai.APIStatusError) as caught:
        gateway.openai().chat.completions.create(
            model="sim-chat", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-sim-hang": "1"}
        )
    assert caught.value.status_code == 504
    assert "chat idle limit" in str(caught.value)
    assert '"stream": true' in str(caught.value)


def test_speech_output_is_real_audio(gateway: Gateway) -> None:
    audio = gateway.openai().audio.speech.create(model="sim-tts", voice="alloy", input="Hi", response_format="wav")
    with wave.open(io.BytesIO(audio.read())) as wav:
        assert wav.getnframes() > 0
