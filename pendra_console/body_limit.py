"""A bound on request bodies for everything Django serves (admin API, console), at the ASGI level.

Django's ASGI handler reads the whole body into a spooled temporary file before any view
or middleware runs, and ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is only checked later, when a view
reads ``request.body``: a client could make every web process write gigabytes to disk.
Here a body declared over ``PENDRA_API_MAX_BODY_BYTES`` is refused on its header, and one
that turns out larger while arriving is refused as soon as it passes the limit, both with
the JSON error contract's 413. Bodies within the limit are handed to Django unchanged.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.conf import settings

from pendra_console.errors import error_body, is_api_path
from pendra_console.request_id import accept_or_mint, log_access


class BodyLimit:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        limit = settings.PENDRA_API_MAX_BODY_BYTES
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _too_large(scope, send, limit, started)
        # Read up to the limit (at most that much is held), then replay it to Django.
        messages: list[dict[str, Any]] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: Django sees the disconnect as it would have
            size += len(message.get("body", b""))
            if size > limit:
                return await _too_large(scope, send, limit, started)
            if not message.get("more_body", False):
                break

        async def replay() -> dict[str, Any]:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _too_large(scope: dict[str, Any], send: Any, limit: int, started: float) -> None:
    incoming = next((value for name, value in scope["headers"] if name == b"x-request-id"), None)
    request_id = accept_or_mint(incoming.decode("latin-1") if incoming is not None else None)
    detail = f"The request body exceeds {limit} bytes."
    path = scope["path"]
    if is_api_path(path):
        content = json.dumps(error_body(413, detail, path=path, request_id=request_id)).encode()
        content_type = b"application/json"
    else:
        content, content_type = detail.encode(), b"text/plain; charset=utf-8"
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(content)).encode()),
        (b"x-request-id", request_id.encode()),
        # The rest of the body is not read, so this connection cannot carry another request.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": content})
    log_access(method=scope["method"], path=path, status=413, started=started)
