"""Validation of ``/v1`` request bodies, before any worker is called.

Each validator returns the facts the gateway needs (model, streaming, billable
units) or raises :class:`InvalidRequest` naming the field that is wrong.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header

from apps.plans.limit_decision import NO_TOKENS, TokenBound
from pendra_console import jsonbody

MAX_TOKENS_LIMIT = 131_072
MAX_CHOICES = 16
MAX_EMBEDDING_INPUTS = 2048
MAX_IMAGES = 10
MAX_SPEECH_INPUT = 4096
CHAT_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_SIZE = re.compile(r"\d{2,5}x\d{2,5}")


class InvalidRequest(Exception):
    def __init__(self, detail: str, param: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.param = param

    def __reduce__(self) -> tuple[type[InvalidRequest], tuple[str, str | None]]:
        # Raised in the parsing helper process (apps.gateway.parsing) and re-raised here, param included.
        return (InvalidRequest, (self.detail, self.param))


@dataclass(slots=True)
class ValidRequest:
    model: str
    stream: bool = False
    include_usage: bool = False
    units: int = 0
    # The body to send upstream when the gateway had to change it (stream usage).
    upstream_body: bytes | None = None
    # Its most tokens, reserved against the plan's tokens per minute at admission.
    bound: TokenBound = NO_TOKENS


def _estimate_tokens(chars: int) -> int:
    """Tokens in ``chars`` characters of text, roughly (about four per token in English); settled later."""
    return (chars + 3) // 4


def _content_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # parts: only text parts are counted
        return sum(
            len(part["text"]) for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0


def _json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequest("The request body is empty: send a JSON object.")
    try:
        data = jsonbody.loads(body)
    except jsonbody.JSONTooDeep as exc:
        raise InvalidRequest(str(exc)) from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise InvalidRequest(f"Malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return data


def _model(data: dict[str, Any]) -> str:
    model = data.get("model")
    if model is None:
        raise InvalidRequest('"model" is required.', "model")
    if not isinstance(model, str) or not model.strip() or len(model) > 200:
        raise InvalidRequest('"model" must be a non-empty string of at most 200 characters.', "model")
    return model


def _int_field(data: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f'"{name}" must be an integer from {low} to {high}.', name)
    return int(value)


def _number_field(data: dict[str, Any], name: str, low: float, high: float) -> None:
    value = data.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest(f'"{name}" must be a number from {low} to {high}.', name)
    if not low <= value <= high:
        raise InvalidRequest(f'"{name}" must be a number from {low} to {high}.', name)


def _bool_field(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f'"{name}" must be true or false.', name)
    return value


def _choice_field(data: dict[str, Any], name: str, allowed: set[str]) -> None:
    value = data.get(name)
    # Only a string can be one of the choices (and a list or object must not reach the set lookup).
    if value is not None and not (isinstance(value, str) and value in allowed):
        raise InvalidRequest(f'"{name}" must be one of: {", ".join(sorted(allowed))}.', name)


_JSON_SPACE = b" \t\r\n"
_ASK_FOR_USAGE = b'"stream_options":{"include_usage":true},'


def _usage_asked_for(body: bytes) -> bytes | None:
    """The client's body with ``"stream_options": {"include_usage": true}`` as its first member.

    The rest goes on byte for byte: encoding the parsed request again cost a streamed request
    about 5 % of its CPU. None (the caller encodes again) unless the body is UTF-8 JSON: it
    opens with ``{`` and has no NUL among its first bytes, as UTF-16 and UTF-32 would. The
    caller only asks for a body with no ``stream_options`` member at all, and the body holds
    a model, so a member follows the new one and its comma is right.
    """
    start = len(body) - len(body.lstrip(_JSON_SPACE))
    if body[start : start + 1] != b"{" or b"\x00" in body[:4]:
        return None
    return body[: start + 1] + _ASK_FOR_USAGE + body[start + 1 :]


def chat(body: bytes, content_type: str) -> ValidRequest:
    data = _json_object(body)
    model = _model(data)
    messages = data.get("messages")
    if messages is None:
        raise InvalidRequest('"messages" is required.', "messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest('"messages" must be a non-empty array.', "messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f'"messages[{index}]" must be an object.', "messages")
        role = message.get("role")
        if not (isinstance(role, str) and role in CHAT_ROLES):
            raise InvalidRequest(
                f'"messages[{index}].role" must be one of: {", ".join(sorted(CHAT_ROLES))}.', "messages"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise InvalidRequest(f'"messages[{index}].content" must be a string or an array.', "messages")
    max_tokens = _int_field(data, "max_tokens", 1, MAX_TOKENS_LIMIT)
    max_completion_tokens = _int_field(data, "max_completion_tokens", 1, MAX_TOKENS_LIMIT)
    choices = _int_field(data, "n", 1, MAX_CHOICES) or 1
    most = max_completion_tokens or max_tokens
    # A few tokens per message for its role and separators, as OpenAI's counting guide has it.
    prompt = _estimate_tokens(sum(_content_chars(message.get("content")) for message in messages)) + 4 * len(messages)
    bound = TokenBound(
        prompt=prompt,
        output=most * choices if most else None,
        choices=choices,
        param=("max_completion_tokens" if max_completion_tokens else "max_tokens") if most else "messages",
    )
    _number_field(data, "temperature", 0, 2)
    _number_field(data, "top_p", 0, 1)
    _number_field(data, "presence_penalty", -2, 2)
    _number_field(data, "frequency_penalty", -2, 2)
    stream = _bool_field(data, "stream")
    include_usage = False
    upstream_body = None
    stream_options = data.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise InvalidRequest('"stream_options" must be an object.', "stream_options")
        if not stream:
            raise InvalidRequest('"stream_options" is only allowed when "stream" is true.', "stream_options")
        include_usage = _bool_field(stream_options, "include_usage")
    if stream and not include_usage:
        # Billing needs the worker's token count, so it is always asked for; the gateway
        # removes the extra usage chunk before the client sees the stream.
        upstream_body = None if "stream_options" in data else _usage_asked_for(body)  # even a null one
        if upstream_body is None:
            data["stream_options"] = {**(stream_options or {}), "include_usage": True}
            upstream_body = json.dumps(data).encode()
    return ValidRequest(
        model=model, stream=stream, include_usage=include_usage, upstream_body=upstream_body, bound=bound
    )


def embeddings(body: bytes, content_type: str) -> ValidRequest:
    data = _json_object(body)
    model = _model(data)
    value = data.get("input")
    if value is None:
        raise InvalidRequest('"input" is required.', "input")
    if isinstance(value, str):
        if not value:
            raise InvalidRequest('"input" must not be empty.', "input")
    elif isinstance(value, list):
        if not value:
            raise InvalidRequest('"input" must not be an empty array.', "input")
        if len(value) > MAX_EMBEDDING_INPUTS:
            raise InvalidRequest(f'"input" may hold at most {MAX_EMBEDDING_INPUTS} items.', "input")
        for index, item in enumerate(value):
            if isinstance(item, str):
                if not item:
                    raise InvalidRequest(f'"input[{index}]" must not be empty.', "input")
            elif not (isinstance(item, (int, list)) and not isinstance(item, bool)):
                raise InvalidRequest(f'"input[{index}]" must be a string or an array of token ids.', "input")
    else:
        raise InvalidRequest('"input" must be a string or an array.', "input")
    _choice_field(data, "encoding_format", {"float", "base64"})
    _int_field(data, "dimensions", 1, 65_536)
    items = value if isinstance(value, list) else [value]
    # A string is estimated from its length; token ids count one each.
    prompt = sum(
        _estimate_tokens(len(item)) if isinstance(item, str) else len(item) if isinstance(item, list) else 1
        for item in items
    )
    return ValidRequest(model=model, bound=TokenBound(prompt=prompt, output=0, param="input"))


def images(body: bytes, content_type: str) -> ValidRequest:
    data = _json_object(body)
    model = _model(data)
    prompt = data.get("prompt")
    if prompt is None:
        raise InvalidRequest('"prompt" is required.', "prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 32_000:
        raise InvalidRequest('"prompt" must be a non-empty string of at most 32000 characters.', "prompt")
    count = _int_field(data, "n", 1, MAX_IMAGES) or 1
    size = data.get("size")
    if size is not None and (not isinstance(size, str) or not (_SIZE.fullmatch(size) or size == "auto")):
        raise InvalidRequest('"size" must look like "1024x1024".', "size")
    if size is not None and size != "auto" and size not in settings.PENDRA_IMAGE_SIZES:
        # A worker given a size it cannot make fails (a 502 after a wasted GPU slot) or makes
        # something else; refusing here names the sizes that work.
        raise InvalidRequest(f'"size" must be one of: {", ".join(settings.PENDRA_IMAGE_SIZES)}, auto.', "size")
    _choice_field(data, "response_format", {"url", "b64_json"})
    return ValidRequest(model=model, units=count)


def speech(body: bytes, content_type: str) -> ValidRequest:
    data = _json_object(body)
    model = _model(data)
    text = data.get("input")
    if text is None:
        raise InvalidRequest('"input" is required.', "input")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_SPEECH_INPUT:
        raise InvalidRequest(f'"input" must be a non-empty string of at most {MAX_SPEECH_INPUT} characters.', "input")
    voice = data.get("voice")
    if voice is None:
        raise InvalidRequest('"voice" is required.', "voice")
    if not isinstance(voice, str) or not voice:
        raise InvalidRequest('"voice" must be a non-empty string.', "voice")
    _choice_field(data, "response_format", {"mp3", "opus", "aac", "flac", "wav", "pcm"})
    _number_field(data, "speed", 0.25, 4.0)
    return ValidRequest(model=model, units=1)


def transcription(body: bytes, content_type: str) -> ValidRequest:
    mime, options = parse_options_header(content_type)
    if mime != b"multipart/form-data" or b"boundary" not in options:
        raise InvalidRequest("Send the audio as multipart/form-data with a boundary.", "file")
    fields: dict[str, bytes] = {}
    file_size = 0
    current: dict[str, Any] = {}

    def on_part_begin() -> None:
        current.clear()
        current["data"] = bytearray()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        current["header_field"] = data[start:end].lower()

    def on_header_value(data: bytes, start: int, end: int) -> None:
        if current.get("header_field") == b"content-disposition":
            _, params = parse_options_header(data[start:end])
            current["name"] = params.get(b"name", b"").decode("latin-1")
            current["is_file"] = b"filename" in params

    def on_part_data(data: bytes, start: int, end: int) -> None:
        current["data"] += data[start:end]

    def on_part_end() -> None:
        nonlocal file_size
        name = current.get("name", "")
        if current.get("is_file") and name == "file":
            file_size = len(current["data"])
        elif name:
            fields[name] = bytes(current["data"][:1024])

    parser = MultipartParser(
        options[b"boundary"],
        callbacks={
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:
        raise InvalidRequest(f"Malformed multipart body: {exc}", "file") from None
    model = fields.get("model", b"").decode("utf-8", "replace").strip()
    if not model:
        raise InvalidRequest('"model" is required.', "model")
    if len(model) > 200:
        raise InvalidRequest('"model" must be at most 200 characters.', "model")
    if not file_size:
        raise InvalidRequest('"file" is required: attach the audio file.', "file")
    response_format = fields.get("response_format")
    if response_format is not None and response_format.decode("latin-1") not in {
        "json",
        "text",
        "srt",
        "verbose_json",
        "vtt",
    }:
        raise InvalidRequest('"response_format" must be one of: json, srt, text, verbose_json, vtt.', "response_format")
    return ValidRequest(model=model, units=1)
