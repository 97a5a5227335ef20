"""What the gateway takes from a worker's answer, and the checks every answer passes.

A worker is not trusted: its body is read up to a bound, its JSON may be malformed or
nested without end, its token counts may be absurd and its stream may carry bytes no
client can decode. Each check here is small and pure, so :mod:`apps.gateway.proxy`
reads as the attempts and the relaying.
"""

from __future__ import annotations

import json
from typing import Any

from apps.requestlog.cleaning import MAX_TOKEN_COUNT, TOKEN_FIELDS
from apps.requestlog.services import TokenUsage


def openai_envelope(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # a worker's deeply nested body is malformed, not a 500
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and "message" in error:
        return error
    return None


def usage_numbers(usage: Any) -> TokenUsage | None:
    """The worker's token counts, or None when it reported none or a count no one can believe.

    A count beyond what a record's column holds would otherwise reach the token-limit
    counter (which refuses it, leaving the stream slot held) and the usage row.
    """
    if not isinstance(usage, dict):
        return None
    numbers = {}
    for name in TOKEN_FIELDS:
        value = usage.get(name, 0)
        if isinstance(value, int) and value > MAX_TOKEN_COUNT:
            return None
        numbers[name] = value if isinstance(value, int) and value >= 0 else 0
    if not numbers["total_tokens"]:
        numbers["total_tokens"] = numbers["prompt_tokens"] + numbers["completion_tokens"]
    if numbers["total_tokens"] > MAX_TOKEN_COUNT:
        return None
    return TokenUsage(**numbers)


INVALID_UTF8 = "The worker sent invalid UTF-8 in its stream."


def is_utf8(events: bytes) -> bool:
    """Complete events only (a character is never split between two): clients decode them as UTF-8."""
    if events.isascii():  # the common case, at C speed
        return True
    try:
        events.decode()
    except UnicodeDecodeError:
        return False
    return True
