"""The ``/v1`` gateway: a lean ASGI application in front of Django.

The request path (DESIGN.md): request id → key → limits → route → proxy → record.
A warm request reads no table: keys and the fleet are cached in this process for
about a second (``apps.keys.authentication.key_cache``, :class:`WorkerPool`), and
its record is handed to a batch writer (``apps.requestlog.recorder``).

Everything that is not ``/v1`` goes to Django unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from django.conf import settings
from django.utils import timezone

from apps.gateway import validation
from apps.gateway.exchange import JSON, BodyTooLarge, ClientGone, Exchange
from apps.gateway.routing import FleetSnapshot, WorkerPool
from apps.gateway.streaming import SSEFilter
from apps.keys import tokens
from apps.keys.authentication import KeyPrincipal, key_cache, load_principal
from apps.plans import limits_async
from apps.requestlog.recorder import recorder
from apps.workers.selectors import WorkerTarget
from pendra_console.aio import SingleFlight, is_stale, run_db
from pendra_console.contract import INVALID_TOKEN
from pendra_console.errors import not_found_detail
from pendra_console.request_id import current_request_id, log_access

logger = logging.getLogger("pendra.gateway")

# Headers a client may pass on to the worker. Credentials, cookies and hop-by-hop
# headers never leave; x-sim-* drive the bundled simulator's fault knobs.
_FORWARDED = {b"content-type", b"accept", b"user-agent"}
_MAX_ERROR_BODY = 64 * 1024


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


class Retry(Exception):
    """This worker failed before anything reached the client: try another."""

    def __init__(self, reason: str, upstream_error: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.upstream_error = upstream_error


class UpstreamTimeout(Exception):
    pass


def _timeout_detail(route: Route, seconds: float) -> str:
    if route.idle_timeout:
        return (
            f"Timed out: the worker sent nothing for {seconds:g} s (the chat idle limit). "
            'Use "stream": true for long generations.'
        )
    if route.kind == "embeddings":
        return f"Timed out: the embeddings request exceeded the {seconds:g} s limit. Send smaller batches."
    return f"Timed out: the {route.noun} exceeded the {seconds:g} s limit. Ask for less per request."


def _openai_envelope(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, dict) and isinstance(data.get("error"), dict) and "message" in data["error"]:
        return data["error"]
    return None


def _usage_numbers(usage: Any) -> dict[str, int] | None:
    if not isinstance(usage, dict):
        return None
    numbers = {}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = usage.get(name, 0)
        numbers[name] = value if isinstance(value, int) and value >= 0 else 0
    if not numbers["total_tokens"]:
        numbers["total_tokens"] = numbers["prompt_tokens"] + numbers["completion_tokens"]
    return numbers


class GatewayApplication:
    def __init__(self, django_app: Any) -> None:
        self.django_app = django_app
        self.pool = WorkerPool(cooldown_seconds=settings.PENDRA_WORKER_COOLDOWN)
        self.key_loads = SingleFlight()
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http" and (scope["path"].startswith("/v1/") or scope["path"] == "/v1"):
            await self.handle(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        else:
            await self.django_app(scope, receive, send)

    # --- lifecycle -----------------------------------------------------------

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                    self._session = None
                await run_db(recorder.flush)
                await send({"type": "lifespan.shutdown.complete"})
                return

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # One pooled client per process; connections to workers are kept alive.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=256, ttl_dns_cache=60, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False)
        return self._session

    # --- the request path ----------------------------------------------------

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        exchange = Exchange(scope, receive, send, uid=secrets.token_hex(16))
        token = current_request_id.set(exchange.request_id)
        try:
            await self.serve(exchange)
        except ClientGone:
            exchange.error = exchange.error or "client disconnected"
            exchange.status = exchange.status or 499
        except Exception:
            logger.exception("unhandled error on %s %s", exchange.method, exchange.path)
            if not exchange.response_started:
                await exchange.error_response(500)
            else:
                exchange.error = "internal error after the response started"
        finally:
            self.finish(exchange)
            current_request_id.reset(token)

    async def serve(self, exchange: Exchange) -> None:
        path = exchange.path.rstrip("/") if exchange.path != "/" else exchange.path
        if path == "/v1/models" or path.startswith("/v1/models/"):
            if exchange.method not in {"GET", "HEAD"}:
                return await exchange.error_response(405, headers=[(b"allow", b"GET")])
            principal = await self.authenticate(exchange)
            if principal is not None:
                await self.models(exchange, principal, path)
            return
        route = ROUTES.get(path)
        if route is None:
            return await exchange.error_response(404, not_found_detail(exchange.path))
        exchange.route = route
        if exchange.method != "POST":
            return await exchange.error_response(405, f"Use POST for {route.path}.", headers=[(b"allow", b"POST")])
        principal = await self.authenticate(exchange)
        if principal is None:
            return
        try:
            body = await exchange.read_body(settings.PENDRA_MAX_BODY_BYTES)
        except BodyTooLarge:
            return await exchange.error_response(
                413, f"The request body exceeds {settings.PENDRA_MAX_BODY_BYTES} bytes."
            )
        try:
            valid = route.validate(body, exchange.header(b"content-type") or "")
        except validation.InvalidRequest as exc:
            return await exchange.invalid(exc)
        exchange.model = valid.model
        exchange.units = valid.units

        fleet = await self.pool.fleet()
        known_kind = fleet.kind_of(valid.model, principal.org_id or 0)
        if known_kind is None:
            return await exchange.invalid(
                validation.InvalidRequest(
                    f'Unknown model "{valid.model}": GET /v1/models lists the models available.', "model"
                )
            )
        if known_kind != route.model_kind:
            return await exchange.invalid(
                validation.InvalidRequest(
                    f'Model "{valid.model}" is a {known_kind} model; it cannot serve {route.path}.', "model"
                )
            )
        admission = await limits_async.admit(org_id=principal.org_id, kind=route.kind, streaming=valid.stream)
        exchange.extra_headers.extend((name.encode(), value.encode()) for name, value in admission.headers.items())
        if not admission.allowed:
            return await exchange.error_response(429, admission.detail, code="rate_limit_exceeded")
        exchange.admitted = True
        exchange.admitted_stream = valid.stream
        await self.until_disconnect(exchange, self.proxy(exchange, route, valid, body, fleet, principal))

    async def until_disconnect(self, exchange: Exchange, work: Any) -> None:
        """Run ``work``; if the client goes away first, cancel it, which closes the upstream connection."""
        task = asyncio.ensure_future(work)
        watcher = asyncio.ensure_future(_disconnected(exchange.receive))
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            if not watcher.done():
                watcher.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientGone

    async def authenticate(self, exchange: Exchange) -> KeyPrincipal | None:
        raw, acceptable = tokens.key_from_headers(exchange.header(b"authorization"), exchange.header(b"x-api-key"))
        parsed = tokens.parse_key(raw) if acceptable else None
        principal = None
        if parsed is not None:
            # A key's cached view is never served past its second (a revocation elsewhere must
            # take effect); concurrent requests for an expired entry share one load.
            entry = key_cache.peek(parsed.public_id)
            if entry is None or is_stale(entry[0]):
                loader = functools.partial(_load_principal, parsed.public_id)
                principal = await self.key_loads.load(parsed.public_id, loader)
            else:
                principal = entry[1]
            now = timezone.now()
            if principal is not None and not (
                tokens.secret_matches(parsed.secret, principal.secret_hash) and principal.usable_at(now)
            ):
                principal = None
            if principal is not None and key_cache.due_for_touch(principal.key_id):
                recorder.touch_key(principal.key_id, now)
        if principal is None:
            await exchange.error_response(401, INVALID_TOKEN, code="invalid_api_key")
            return None
        exchange.principal = principal
        if principal.org_id is None:
            await exchange.error_response(
                403, "This key belongs to platform staff and no organisation; inference needs an organisation's key."
            )
            return None
        return principal

    async def models(self, exchange: Exchange, principal: KeyPrincipal, path: str) -> None:
        fleet = await self.pool.fleet()
        available = self.pool.models_for(fleet, principal.org_id or 0)
        entries = [
            {"id": name, "object": "model", "created": 0, "owned_by": "pendra", "kind": kind}
            for name, kind in sorted(available.items())
        ]
        if path == "/v1/models":
            return await exchange.respond_json(200, {"object": "list", "data": entries})
        wanted = path.removeprefix("/v1/models/")
        for entry in entries:
            if entry["id"] == wanted:
                return await exchange.respond_json(200, entry)
        await exchange.error_response(404, f'Model "{wanted}" not found: GET /v1/models lists the models available.')

    # --- proxying --------------------------------------------------------------

    async def proxy(
        self,
        exchange: Exchange,
        route: Route,
        valid: validation.ValidRequest,
        body: bytes,
        fleet: FleetSnapshot,
        principal: KeyPrincipal,
    ) -> None:
        limit = float(getattr(settings, route.timeout_setting))
        deadline = None if route.idle_timeout else time.monotonic() + limit
        payload = valid.upstream_body if valid.upstream_body is not None else body
        headers = {
            name.decode(): value.decode("latin-1")
            for name, value in exchange.headers.items()
            if name in _FORWARDED or name.startswith(b"x-sim-")
        }
        headers["X-Request-Id"] = exchange.request_id
        headers["Accept-Encoding"] = "identity"

        tried: set[str] = set()
        last_reason = ""
        upstream_error = None
        for _ in range(settings.PENDRA_MAX_ATTEMPTS):
            candidates = self.pool.candidates(fleet, valid.model, principal.org_id or 0, tried)
            if not candidates:
                break
            worker = candidates[0]
            tried.add(worker.id)
            exchange.worker = worker
            exchange.attempts += 1
            self.pool.started(worker.id)
            try:
                await self.attempt(exchange, route, valid, worker, payload, headers, deadline, limit)
            except Retry as failure:
                self.pool.failed(worker.id)
                last_reason = failure.reason
                upstream_error = failure.upstream_error
                logger.warning("worker %s failed (%s); %s", worker.name, failure.reason, "trying another")
                continue
            except UpstreamTimeout:
                self.pool.failed(worker.id)
                return await exchange.error_response(504, _timeout_detail(route, limit), code="timeout")
            finally:
                self.pool.finished(worker.id)
            self.pool.succeeded(worker.id)
            return
        if exchange.attempts == 0:
            return await exchange.error_response(
                503,
                f'No healthy worker is serving "{valid.model}" right now; retry shortly.',
                code="no_worker",
                headers=[(b"retry-after", b"5")],
            )
        await exchange.error_response(
            502,
            f"The GPU worker failed ({last_reason}); retrying picks a different worker.",
            code="worker_error",
            upstream_error=upstream_error,
        )

    async def attempt(
        self,
        exchange: Exchange,
        route: Route,
        valid: validation.ValidRequest,
        worker: WorkerTarget,
        payload: bytes,
        headers: dict[str, str],
        deadline: float | None,
        limit: float,
    ) -> None:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise UpstreamTimeout
        timeout = aiohttp.ClientTimeout(
            total=remaining,
            sock_connect=settings.PENDRA_CONNECT_TIMEOUT,
            sock_read=limit if route.idle_timeout else None,
        )
        exchange.upstream_started = time.perf_counter()
        try:
            response = await self.session.post(
                worker.base_url + route.path, data=payload, headers=headers, timeout=timeout
            )
        except aiohttp.ServerTimeoutError as exc:
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise Retry("connection timed out") from None
            raise UpstreamTimeout from None
        except TimeoutError:
            raise UpstreamTimeout from None
        except aiohttp.ClientError as exc:
            raise Retry(f"could not reach the worker: {exc.__class__.__name__}") from None
        try:
            if valid.stream and response.status < 300 and response.content_type == "text/event-stream":
                await self.relay_stream(exchange, response, valid, route)
            else:
                await self.relay_body(exchange, response, route)
        except TimeoutError:
            raise UpstreamTimeout from None
        finally:
            response.close()

    async def relay_body(self, exchange: Exchange, response: aiohttp.ClientResponse, route: Route) -> None:
        try:
            content = await response.read()
        except aiohttp.ServerTimeoutError:
            raise UpstreamTimeout from None
        except aiohttp.ClientError as exc:
            raise Retry(f"the worker's response broke off: {exc.__class__.__name__}") from None
        exchange.first_byte_at = exchange.upstream_finished = time.perf_counter()
        status = response.status
        if status >= 500:
            raise Retry(f"HTTP {status}", _openai_envelope(content[:_MAX_ERROR_BODY]))
        content_type = response.headers.get("Content-Type", "application/octet-stream").encode("latin-1")
        if status >= 400:
            # The worker refused the request itself: its answer (often an OpenAI envelope) goes back as it is.
            exchange.error = f"worker answered HTTP {status}"
            return await exchange.respond(status, content, content_type)
        if route.json_response or content_type.startswith(JSON):
            try:
                data = json.loads(content)
            except (ValueError, UnicodeDecodeError):
                raise Retry("the worker returned a malformed body") from None
            if not isinstance(data, dict):
                raise Retry("the worker returned a malformed body")
            exchange.usage = _usage_numbers(data.get("usage"))
            if route.kind == "images" and isinstance(data.get("data"), list):
                exchange.units = len(data["data"])
        elif not content:
            raise Retry("the worker returned an empty body")
        exchange.succeeded = True
        await exchange.respond(status, content, content_type)

    async def relay_stream(
        self, exchange: Exchange, response: aiohttp.ClientResponse, valid: validation.ValidRequest, route: Route
    ) -> None:
        stream = SSEFilter(strip_usage=not valid.include_usage)
        try:
            first = await response.content.readany()
        except aiohttp.ServerTimeoutError:
            raise UpstreamTimeout from None
        except aiohttp.ClientError as exc:
            raise Retry(f"the stream broke before its first byte: {exc.__class__.__name__}") from None
        if not first:
            raise Retry("the worker closed the stream before its first byte")
        exchange.first_byte_at = time.perf_counter()
        exchange.streamed = True
        await exchange.start(
            200, [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        )
        # From here on the client has bytes: failures end the stream with an error event, never a replay.
        chunk = first
        while chunk:
            out = stream.feed(chunk)
            if out:
                await exchange.body(out, more=True)
            try:
                chunk = await response.content.readany()
            except (aiohttp.ServerTimeoutError, TimeoutError):
                return await self.break_stream(exchange, 504, _timeout_detail(route, settings.PENDRA_CHAT_IDLE_TIMEOUT))
            except aiohttp.ClientError as exc:
                return await self.break_stream(
                    exchange, 502, f"The worker's stream broke off ({exc.__class__.__name__})."
                )
        tail = stream.flush()
        if tail:
            await exchange.body(tail, more=True)
        exchange.upstream_finished = time.perf_counter()
        exchange.usage = _usage_numbers(stream.usage)
        if not stream.done:
            return await self.break_stream(exchange, 502, "The worker ended the stream without finishing it.")
        exchange.succeeded = True
        await exchange.body(b"", more=False)

    async def break_stream(self, exchange: Exchange, status: int, detail: str) -> None:
        exchange.error = detail
        exchange.status = status
        exchange.usage = None
        event = {
            "detail": detail,
            "request_id": exchange.request_id,
            "error": {"message": detail, "type": "api_error", "code": "stream_broken", "param": None},
        }
        await exchange.body(b"data: " + json.dumps(event).encode() + b"\n\n", more=False)

    # --- after the response ------------------------------------------------------

    def finish(self, exchange: Exchange) -> None:
        now = time.perf_counter()
        principal = exchange.principal
        worker = exchange.worker
        usage = exchange.usage if exchange.succeeded else None
        status = exchange.status or 499
        record = {
            "uid": exchange.uid,
            "request_id": exchange.request_id,
            "created_at": timezone.now(),
            "org_id": principal.org_id if principal else None,
            "api_key_id": principal.key_id if principal else None,
            "user_id": principal.user_id if principal else None,
            "route": (exchange.route.path if exchange.route else exchange.path)[:200],
            "method": exchange.method,
            "model": exchange.model,
            "status": status,
            "worker_id": worker.id if worker else None,
            "worker_name": worker.name if worker else "",
            "attempts": exchange.attempts,
            "streamed": exchange.streamed,
            "latency_ms": round((now - exchange.started) * 1000, 3),
            "upstream_latency_ms": _ms(exchange.upstream_started, exchange.upstream_finished),
            "ttfb_ms": _ms(exchange.upstream_started, exchange.first_byte_at),
            "prompt_tokens": usage["prompt_tokens"] if usage else None,
            "completion_tokens": usage["completion_tokens"] if usage else None,
            "total_tokens": usage["total_tokens"] if usage else None,
            "error": exchange.error[:500],
        }
        billed = None
        if exchange.succeeded and principal is not None and exchange.route is not None:
            billed = {
                "request_uid": exchange.uid,
                "request_id": exchange.request_id,
                "created_at": record["created_at"],
                "org_id": principal.org_id,
                "api_key_id": principal.key_id,
                "route": exchange.route.path,
                "model": exchange.model,
                "prompt_tokens": usage["prompt_tokens"] if usage else 0,
                "completion_tokens": usage["completion_tokens"] if usage else 0,
                "total_tokens": usage["total_tokens"] if usage else 0,
                "units": exchange.units,
            }
        recorder.submit(record, billed)
        if exchange.admitted and principal is not None and exchange.route is not None:
            # Counting tokens and freeing the stream slot happen after the response, off its path.
            limits_async.spawn_settle(
                org_id=principal.org_id,
                kind=exchange.route.kind,
                tokens=usage["total_tokens"] if usage else 0,
                streaming=exchange.admitted_stream,
            )
        log_access(
            method=exchange.method,
            path=exchange.path,
            status=status,
            started=exchange.started,
            worker=worker.name if worker else None,
            attempts=exchange.attempts,
        )


def _load_principal(public_id: str) -> KeyPrincipal | None:
    principal = load_principal(public_id)
    key_cache.store(public_id, principal)
    return principal


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) * 1000, 3)
