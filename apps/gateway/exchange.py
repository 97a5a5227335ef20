"""One ``/v1`` request and its response, at the ASGI level.

Holds what the request path learns as it goes (key, org, worker, timings, tokens) so
the record written at the end has it all, and sends the response with the headers
every ``/v1`` response carries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from apps.gateway.validation import InvalidRequest
from apps.plans.limit_decision import Admission
from apps.plans.limits_async import LeaseKeeper
from apps.requestlog.services import LimitHit, TimeoutHit, TokenUsage
from pendra_console.errors import default_detail, error_body
from pendra_console.request_id import accept_or_mint

JSON = b"application/json"


class ClientGone(Exception):
    """The client disconnected; nothing more can be sent."""


class BodyTooLarge(Exception):
    pass


class Exchange:
    __slots__ = (
        "admission",
        "attempts",
        "client_gone",
        "concluded",
        "delivered_tokens",
        "ended",
        "error",
        "extra_headers",
        "first_byte_at",
        "headers",
        "key_public_id",
        "lease_keeper",
        "limit_hit",
        "method",
        "model",
        "on_end",
        "path",
        "principal",
        "receive",
        "refused_principal",
        "request_id",
        "response_started",
        "route",
        "scope",
        "send",
        "settle",
        "span",
        "started",
        "status",
        "streamed",
        "succeeded",
        "timeout_hit",
        "trail",
        "uid",
        "units",
        "upstream_finished",
        "upstream_started",
        "usage",
        "worker",
        "worker_failed",
    )

    def __init__(self, scope: dict[str, Any], receive: Any, send: Any, uid: str) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.started = time.perf_counter()
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        # ASGI header names are lower-case bytes; the last value of a repeated header wins.
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        incoming = self.headers.get(b"x-request-id")
        self.request_id = accept_or_mint(incoming.decode("latin-1") if incoming is not None else None)
        self.uid = uid
        self.status = 0
        self.response_started = False
        self.ended = False  # the response's last bytes were sent
        self.extra_headers: list[tuple[bytes, bytes]] = []
        self.principal: Any = None
        self.route: Any = None
        self.model = ""
        self.worker: Any = None
        self.attempts = 0
        self.streamed = False
        self.upstream_started: float | None = None
        self.upstream_finished: float | None = None
        self.first_byte_at: float | None = None
        self.usage: TokenUsage | None = None
        self.units = 0
        self.error = ""
        self.succeeded = False
        # The limits' Admission once admitted (settled after the response), and the timer
        # renewing a stream's lease while it runs.
        self.admission: Admission | None = None
        self.lease_keeper: LeaseKeeper | None = None
        # Set when the client left before the end of the answer (recorded as 499, billed).
        self.client_gone = False
        self.delivered_tokens = 0  # content events that reached the client: the bill if the worker's usage never comes
        self.worker_failed = False
        self.span: Any = None  # the request's trace span, when tracing is on (apps.gateway.tracing)
        # Awaited once, just before the response's last bytes (the record's durable hand-off).
        self.on_end: Callable[[Exchange], Awaitable[None]] | None = None
        self.concluded = False  # the record and the settle have been handed over
        # Without the durable hand-off: the settle's arguments, from the conclusion to the response's end.
        self.settle: dict[str, Any] | None = None
        # What the record's explanation needs: the presented key's public id, the key a 401
        # refused (its org and user, when this process knows it), the limit or timeout that
        # ended the request, and every worker tried with what it returned.
        self.key_public_id = ""
        self.refused_principal: Any = None
        self.limit_hit: LimitHit | None = None
        self.timeout_hit: TimeoutHit | None = None
        self.trail: list[dict[str, str]] = []

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else None

    def base_headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"x-request-id", self.request_id.encode())]
        if self.worker is not None:
            headers.append((b"x-worker-id", self.worker.id.encode()))
            headers.append((b"x-worker-name", self.worker.name.encode("utf-8")))
        headers.extend(self.extra_headers)
        return headers

    async def read_body(self, limit: int) -> bytes:
        declared = self.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.response_started = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers + self.base_headers()})

    async def body(self, data: bytes, *, more: bool) -> None:
        """Response bytes after the head; the last ones go through :meth:`end`, which hands off first."""
        await self.send({"type": "http.response.body", "body": data, "more_body": more})
        if not more:
            self.ended = True

    async def end(self, data: bytes, *, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The response's last bytes, and its head (``status``, ``headers``) if it has not gone yet.

        The hand-off (``on_end``) comes first and then head and body together: the server sends
        them in one write (pendra_console/http_protocol.py) only if nothing is awaited between them.
        """
        if not self.response_started:
            self.status = status  # what the record says
        if self.on_end is not None:
            on_end, self.on_end = self.on_end, None
            await on_end(self)
        if not self.response_started:
            await self.start(status, headers)
        await self.body(data, more=False)

    async def respond(self, status: int, content: bytes, content_type: bytes = JSON) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(content)).encode())]
        await self.end(content, status=status, headers=headers)

    async def respond_json(self, status: int, payload: dict[str, Any]) -> None:
        await self.respond(status, json.dumps(payload).encode())

    async def error_response(
        self,
        status: int,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        upstream_error: dict[str, Any] | None = None,
    ) -> None:
        detail = detail or default_detail(status)
        body = error_body(status, detail, path=self.path, request_id=self.request_id, code=code)
        if upstream_error is not None:
            body["error"] = upstream_error  # the worker's own OpenAI envelope reaches the client
        self.error = detail[:500]
        self.extra_headers.extend(headers or [])
        if status == 401:
            self.extra_headers.append((b"www-authenticate", b"Bearer"))
        await self.respond_json(status, body)

    async def invalid(self, exc: InvalidRequest) -> None:
        body = error_body(400, exc.detail, path=self.path, request_id=self.request_id, code="invalid_request")
        body["error"]["param"] = exc.param
        self.error = exc.detail[:500]
        await self.respond_json(400, body)
