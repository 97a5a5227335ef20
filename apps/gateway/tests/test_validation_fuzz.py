"""No body, however odd, makes a validator raise anything but a 400 (InvalidRequest)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from apps.gateway import validation

VALIDATORS = [validation.chat, validation.embeddings, validation.images, validation.speech]
FIELDS = [
    "model",
    "messages",
    "role",
    "content",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "temperature",
    "top_p",
    "stream",
    "stream_options",
    "include_usage",
    "input",
    "encoding_format",
    "dimensions",
    "prompt",
    "size",
    "response_format",
    "voice",
    "speed",
    "presence_penalty",
    "frequency_penalty",
]


def _value(rng: random.Random, depth: int) -> Any:
    choices: list[Any] = [
        None,
        True,
        False,
        0,
        -1,
        1,
        10**12,
        1.5,
        float("1e308"),
        "",
        "sim-chat",
        "x" * 300,
        "user",
        "wav",
        "1024x1024",
        [],
        {},
    ]
    if depth < 3:
        choices += [
            [_value(rng, depth + 1) for _ in range(rng.randint(1, 3))],
            {rng.choice(FIELDS): _value(rng, depth + 1) for _ in range(rng.randint(1, 4))},
        ]
    return rng.choice(choices)


def _bodies(count: int) -> list[bytes]:
    rng = random.Random(20261125)  # fixed: the same bodies on every run
    bodies = [b"", b"null", b"[]", b"{", b"\xff\xfe", b'"just a string"', b"1e999", b'{"model": NaN}']
    for _ in range(count):
        body = {field: _value(rng, 0) for field in rng.sample(FIELDS, rng.randint(0, 8))}
        bodies.append(json.dumps(body).encode())
    return bodies


@pytest.mark.parametrize("validate", VALIDATORS, ids=lambda v: v.__name__)
def test_random_bodies_are_accepted_or_refused_with_a_named_reason(validate: Any) -> None:
    for body in _bodies(2000):
        try:
            validate(body, "application/json")
        except validation.InvalidRequest as refused:
            assert refused.detail


@pytest.mark.parametrize(
    "content_type",
    ["", "multipart/form-data", "multipart/form-data; boundary=", "text/plain", "multipart/form-data; boundary=zz"],
)
def test_odd_transcription_uploads_are_refused_with_a_named_reason(content_type: str) -> None:
    for body in [
        b"",
        b"--zz\r\n",
        b"--zz--\r\n",
        b"\x00" * 50,
        b'--zz\r\nContent-Disposition: form-data; name="model"\r\n\r\n',
    ]:
        with pytest.raises(validation.InvalidRequest):
            validation.transcription(body, content_type)
