"""The ``/v1`` inference routes: what each one validates, which bucket and worker kind it
uses, and its timeout (DESIGN.md, "The /v1 request path")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apps.gateway import validation


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    kind: str  # the rate-limit bucket and usage kind
    model_kind: str  # the kind of model a worker must serve
    validate: Any
    timeout_setting: str
    idle_timeout: bool  # chat: the limit is silence between bytes, not the total
    json_response: bool
    noun: str


ROUTES = {
    route.path: route
    for route in (
        Route(
            "/v1/chat/completions",
            "chat",
            "chat",
            validation.chat,
            "PENDRA_CHAT_IDLE_TIMEOUT",
            True,
            True,
            "chat completion",
        ),
        Route(
            "/v1/embeddings",
            "embeddings",
            "embeddings",
            validation.embeddings,
            "PENDRA_EMBEDDINGS_TIMEOUT",
            False,
            True,
            "embeddings request",
        ),
        Route(
            "/v1/images/generations",
            "images",
            "image",
            validation.images,
            "PENDRA_IMAGES_TIMEOUT",
            False,
            True,
            "image generation",
        ),
        Route(
            "/v1/audio/transcriptions",
            "audio",
            "audio",
            validation.transcription,
            "PENDRA_AUDIO_TIMEOUT",
            False,
            False,
            "transcription",
        ),
        Route(
            "/v1/audio/speech",
            "audio",
            "audio",
            validation.speech,
            "PENDRA_AUDIO_TIMEOUT",
            False,
            False,
            "speech request",
        ),
    )
}
