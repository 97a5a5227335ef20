"""JSON from clients, parsed with a fixed bound on nesting; one rule for ``/v1`` and ``/api/v1``.

Python's parser recurses once per level and raises ``RecursionError`` (not ``ValueError``)
somewhere near a thousand levels, depending on how deep the caller's stack already is:
left alone, ``[[[[...]]]]`` is a 500 on every surface. No request Pendra serves needs
more than a few levels (a chat message's content parts, a tool's JSON schema), so
anything deeper than :data:`MAX_JSON_DEPTH` is refused as a client error, the same
everywhere, whatever the stack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 64
TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels is not accepted."


class JSONTooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__(TOO_DEEP)


def _strict_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_ONE_KIND = bytes.maketrans(b"{}", b"[]")


def loads(body: bytes | str, *, allow_nan: bool = True) -> Any:
    """``json.loads`` that raises :class:`JSONTooDeep` (a ``ValueError``) past the depth limit."""
    try:
        data = json.loads(body, parse_constant=None if allow_nan else _strict_constant)
    except RecursionError:
        raise JSONTooDeep from None
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    # Fewer opening brackets than the limit (counting those inside strings too) cannot nest
    # deeper: the usual small request skips the measurement.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _deeper_than_limit(raw):
        raise JSONTooDeep
    return data


def _deeper_than_limit(raw: bytes) -> bool:
    """Measured on the text, at C speed, so a body holding millions of numbers costs no walk.

    With strings removed only the brackets remain (one kind will do: the text is valid JSON,
    so they are balanced). Each pass removes every innermost ``[]`` pair, that is one level
    (``bytes.replace`` does not rescan what it produced), so brackets left after
    ``MAX_JSON_DEPTH`` passes nest deeper.
    """
    brackets = _STRING.sub(b"", raw).translate(_ONE_KIND, _NOT_BRACKETS)
    for _ in range(MAX_JSON_DEPTH):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with the depth rule; strict like DRF's (no NaN or Infinity)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return loads(stream.read().decode(encoding), allow_nan=False)
        except JSONTooDeep as exc:
            raise ParseError(str(exc)) from None
        except ValueError as exc:  # UnicodeDecodeError included
            raise ParseError(f"JSON parse error - {exc}") from None
