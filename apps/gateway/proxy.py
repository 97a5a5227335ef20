"""Proxying one ``/v1`` request to a GPU worker: attempts, timeouts, streaming.

:meth:`Proxy.forward` picks workers from the :class:`~apps.gateway.routing.WorkerPool`
and tries them in turn while nothing has reached the client (a worker's 5xx, reset or
garbage is a :class:`Retry`); once bytes are out, a failure ends the stream with an
error event instead. Phase timeouts come from the route (chat: silence between bytes;
others: the total) and answer 504. If the client goes away the worker gets a bounded
moment to finish (its usage is billed), then the attempt is cancelled, which closes
the upstream connection. Upstream 4xx answers and OpenAI error envelopes
pass through unchanged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from typing import Any

import aiohttp
from django.conf import settings

from apps.gateway import tracing, validation
from apps.gateway.answers import INVALID_UTF8, is_utf8, openai_envelope, usage_numbers
from apps.gateway.exchange import JSON, ClientGone, Exchange
from apps.gateway.routes import Route
from apps.gateway.routing import FleetSnapshot, WorkerPool
from apps.gateway.streaming import EventTooLarge, SSEFilter, content_events
from apps.gateway.upstream import Response, Upstream
from apps.keys.authentication import KeyPrincipal
from apps.requestlog.services import TimeoutHit
from apps.workers.selectors import WorkerTarget
from pendra_console.hot_settings import hot

logger = logging.getLogger("pendra.gateway")

# Headers a client may pass on to the worker. Credentials, cookies and hop-by-hop
# headers never leave; x-sim-* drive the bundled simulator's fault knobs and are passed
# only where the simulator is in use (PENDRA_FORWARD_SIM_HEADERS).
_FORWARDED = {b"content-type", b"accept", b"user-agent"}
_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


class Retry(Exception):
    """This worker failed before anything reached the client: try another."""

    def __init__(self, reason: str, upstream_error: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.upstream_error = upstream_error


class UpstreamTimeout(Exception):
    pass


def _total_limit(route: Route) -> float:
    """Seconds a whole request may take: the route's limit, or for chat (limited by silence) its own cap.

    Without the cap a worker that sends a byte just inside the idle limit, forever, would
    hold the request (and its stream slot and connection) for ever.
    """
    if route.idle_timeout:
        return float(hot.PENDRA_CHAT_MAX_SECONDS)
    return float(getattr(hot, route.timeout_setting))


def _timeout_detail(route: Route, seconds: float, *, deadline: float | None = None) -> str:
    if deadline is not None and route.idle_timeout and time.monotonic() >= deadline:
        return (
            f"Timed out: the {route.noun} exceeded the {_total_limit(route):g} s limit. "
            "Ask for fewer tokens per request."
        )
    if route.idle_timeout:
        return (
            f"Timed out: the worker sent nothing for {seconds:g} s (the chat idle limit). "
            'Use "stream": true for long generations.'
        )
    if route.kind == "embeddings":
        return f"Timed out: the embeddings request exceeded the {seconds:g} s limit. Send smaller batches."
    return f"Timed out: the {route.noun} exceeded the {seconds:g} s limit. Ask for less per request."


def _timeout_hit(route: Route, seconds: float, *, deadline: float | None = None) -> TimeoutHit:
    """Which timeout hit, for the record: as :func:`_timeout_detail` words it to the client."""
    if deadline is not None and route.idle_timeout and time.monotonic() >= deadline:
        return TimeoutHit(name=f"{route.kind} total", seconds=_total_limit(route))
    return TimeoutHit(name=f"{route.kind} {'idle' if route.idle_timeout else 'total'}", seconds=seconds)


class Proxy:
    """The upstream side of the gateway: one pooled HTTP client per process, and the attempts."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self._upstream: Upstream | None = None

    @property
    def upstream(self) -> Upstream:
        if self._upstream is None:
            # One pooled client per process; connections to workers are kept alive, and every
            # address is checked as it is resolved (DNS rebinding), see apps.gateway.upstream.
            # Per worker: one connection per request in flight, so the cap is how many streams one
            # process can hold open to a worker (256 here queued the 257th stream behind the others).
            self._upstream = Upstream(limit_per_host=settings.PENDRA_WORKER_MAX_CONNECTIONS)
        return self._upstream

    async def close(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    async def forward(
        self,
        exchange: Exchange,
        route: Route,
        valid: validation.ValidRequest,
        body: bytes,
        fleet: FleetSnapshot,
        principal: KeyPrincipal,
    ) -> None:
        """Answer the client from a worker, or with the 5xx that says why none could."""
        await self.until_disconnect(exchange, self.proxy(exchange, route, valid, body, fleet, principal))

    async def until_disconnect(self, exchange: Exchange, work: Awaitable[None]) -> None:
        """Run ``work``; if the client goes away first, give the worker a bounded moment to finish.

        The worker did the work, so a client that leaves is billed for it: within
        ``PENDRA_ABANDONED_USAGE_WAIT`` the answer (sent nowhere: the server drops what is
        sent after a disconnect) may end with the worker's usage; otherwise the work is
        cancelled, which closes the upstream connection and frees the worker, and what was
        delivered is billed (:func:`apps.gateway.metering.finish`).

        ``work`` runs in this task; only the disconnect watcher is a task of its own, and it
        arms the cancellation when the client leaves (a task per attempt and an
        ``asyncio.wait`` on both cost each request more than the rest of this module).
        """
        watch = _DisconnectWatch(exchange)
        try:
            await work
        except asyncio.CancelledError:
            if not watch.expired:
                raise
        except Exception as exc:
            if not exchange.client_gone:
                raise
            logger.warning("after the client left: %r", exc)
        finally:
            watch.stop()
        if watch.expired and watch.task.uncancel() > 0:
            raise asyncio.CancelledError  # cancelled from outside as well: that one still stands
        if exchange.client_gone:
            raise ClientGone

    async def proxy(
        self,
        exchange: Exchange,
        route: Route,
        valid: validation.ValidRequest,
        body: bytes,
        fleet: FleetSnapshot,
        principal: KeyPrincipal,
    ) -> None:
        limit = float(getattr(hot, route.timeout_setting))
        deadline = time.monotonic() + _total_limit(route)
        payload = valid.upstream_body if valid.upstream_body is not None else body
        sim_headers = hot.PENDRA_FORWARD_SIM_HEADERS
        headers = {
            name.decode(): value.decode("latin-1")
            for name, value in exchange.headers.items()
            if name in _FORWARDED or (sim_headers and name.startswith(b"x-sim-"))
        }
        headers["X-Request-Id"] = exchange.request_id
        headers["Accept-Encoding"] = "identity"

        tried: set[str] = set()
        last_reason = ""
        upstream_error = None
        for _ in range(hot.PENDRA_MAX_ATTEMPTS):
            if exchange.client_gone:
                return  # no other worker starts on an answer nobody waits for
            candidates = self.pool.candidates(fleet, valid.model, principal.org_id or 0, tried)
            if not candidates:
                break
            worker = candidates[0]
            tried.add(worker.id)
            exchange.worker = worker
            exchange.attempts += 1
            # The record's worker trail; a result left empty is read from the exchange (metering).
            tried_entry = {"worker_id": worker.id, "worker": worker.name, "result": ""}
            exchange.trail.append(tried_entry)
            self.pool.started(worker.id)
            try:
                with tracing.attempt(exchange, worker, headers):
                    await self.attempt(exchange, route, valid, worker, payload, headers, deadline, limit)
            except Retry as failure:
                self.pool.failed(worker.id)
                last_reason = tried_entry["result"] = failure.reason
                upstream_error = failure.upstream_error
                logger.warning("worker %s failed (%s); %s", worker.name, failure.reason, "trying another")
                continue
            except UpstreamTimeout:
                self.pool.failed(worker.id)
                exchange.timeout_hit = _timeout_hit(route, limit, deadline=deadline)
                tried_entry["result"] = f"timed out ({exchange.timeout_hit.seconds:g} s)"
                return await exchange.error_response(
                    504, _timeout_detail(route, limit, deadline=deadline), code="timeout"
                )
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
        deadline: float,
        limit: float,
    ) -> None:
        if deadline - time.monotonic() <= 0:
            raise UpstreamTimeout
        exchange.upstream_started = time.perf_counter()
        try:
            # A redirect could point anywhere, including addresses no worker may have: never followed.
            response = await self.upstream.post(
                worker.base_url + route.path,
                payload,
                headers,
                connect_timeout=hot.PENDRA_CONNECT_TIMEOUT,
                read_timeout=limit if route.idle_timeout else None,
                deadline=deadline,
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
                await self.relay_stream(exchange, response, valid, route, deadline)
            else:
                await self.relay_body(exchange, response, route)
        except TimeoutError:
            raise UpstreamTimeout from None
        finally:
            response.close()

    async def relay_body(self, exchange: Exchange, response: Response, route: Route) -> None:
        status = response.status
        if 300 <= status < 400:
            raise Retry(f"HTTP {status}: a redirect, which is never followed")
        # A worker's answer is held in memory whole: bounded, so one worker cannot exhaust the process.
        limit = hot.PENDRA_WORKER_MAX_ERROR_BYTES if status >= 400 else hot.PENDRA_WORKER_MAX_BODY_BYTES
        try:
            content = await response.read_bounded(limit)
        except aiohttp.ServerTimeoutError:
            raise UpstreamTimeout from None
        except aiohttp.ClientError as exc:
            raise Retry(f"the worker's response broke off: {exc.__class__.__name__}") from None
        if content is None:
            raise Retry(f"its HTTP {status} answer exceeded {limit} bytes")
        exchange.first_byte_at = exchange.upstream_finished = time.perf_counter()
        if status >= 500:
            raise Retry(f"HTTP {status}", openai_envelope(content))
        content_type = response.headers.get("Content-Type", "application/octet-stream").encode("latin-1")
        if status >= 400:
            # The worker refused the request itself: its answer (often an OpenAI envelope) goes back as it is.
            exchange.error = f"worker answered HTTP {status}"
            return await exchange.respond(status, content, content_type)
        if route.json_response or content_type.startswith(JSON):
            try:
                data = json.loads(content)
            except (ValueError, RecursionError):
                raise Retry("the worker returned a malformed body") from None
            if not isinstance(data, dict):
                raise Retry("the worker returned a malformed body")
            exchange.usage = usage_numbers(data.get("usage"))
            if route.kind == "images" and isinstance(data.get("data"), list):
                exchange.units = len(data["data"])
        elif not content:
            raise Retry("the worker returned an empty body")
        exchange.succeeded = True
        await exchange.respond(status, content, content_type)

    async def relay_stream(
        self,
        exchange: Exchange,
        response: Response,
        valid: validation.ValidRequest,
        route: Route,
        deadline: float,
    ) -> None:
        stream = SSEFilter(strip_usage=not valid.include_usage, max_event_bytes=hot.PENDRA_WORKER_MAX_EVENT_BYTES)
        try:
            first = await response.readany()
        except aiohttp.ServerTimeoutError:
            raise UpstreamTimeout from None
        except aiohttp.ClientError as exc:
            raise Retry(f"the stream broke before its first byte: {exc.__class__.__name__}") from None
        if not first:
            raise Retry("the worker closed the stream before its first byte")
        exchange.first_byte_at = time.perf_counter()
        exchange.streamed = True
        # From here on the client is answered: failures end the stream with an error event, never a replay.
        # The head goes with the first events; the events from the worker's [DONE] on are held until its
        # answer ends and leave with the stream's terminator, after the record's hand-off: one write
        # where a short stream took three (pendra_console/http_protocol.py).
        held = b""
        chunk = first
        while chunk:
            try:
                out = stream.feed(chunk)
            except EventTooLarge as exc:
                return await self.break_stream(exchange, 502, f"The worker sent {exc}.", held)
            if out and not is_utf8(out):
                return await self.break_stream(exchange, 502, INVALID_UTF8, held)
            if out:
                if not exchange.client_gone:
                    exchange.delivered_tokens += content_events(out)
                if stream.done:
                    held += out
                else:
                    if not exchange.response_started:
                        await exchange.start(200, _SSE_HEADERS)
                    await exchange.body(out, more=True)
            try:
                chunk = await response.readany()
            except (aiohttp.ServerTimeoutError, TimeoutError):
                if stream.done:
                    break  # finished, and the worker kept the connection open: the answer is whole
                exchange.timeout_hit = _timeout_hit(route, settings.PENDRA_CHAT_IDLE_TIMEOUT, deadline=deadline)
                detail = _timeout_detail(route, settings.PENDRA_CHAT_IDLE_TIMEOUT, deadline=deadline)
                return await self.break_stream(exchange, 504, detail, held)
            except aiohttp.ClientError as exc:
                if stream.done:
                    break
                return await self.break_stream(
                    exchange, 502, f"The worker's stream broke off ({exc.__class__.__name__}).", held
                )
        tail = stream.flush()
        if tail and not is_utf8(tail):
            return await self.break_stream(exchange, 502, INVALID_UTF8, held)
        exchange.upstream_finished = time.perf_counter()
        exchange.usage = usage_numbers(stream.usage)
        if not stream.done:
            return await self.break_stream(exchange, 502, "The worker ended the stream without finishing it.", tail)
        exchange.succeeded = True
        await exchange.end(held + tail, status=200, headers=_SSE_HEADERS)

    async def break_stream(self, exchange: Exchange, status: int, detail: str, before: bytes = b"") -> None:
        """End a stream whose head has gone (or goes now, as 200) with an error event after ``before``."""
        if not exchange.response_started:
            await exchange.start(200, _SSE_HEADERS)
        exchange.worker_failed = True
        exchange.error = detail
        exchange.status = status
        exchange.usage = None
        event = {
            "detail": detail,
            "request_id": exchange.request_id,
            "error": {"message": detail, "type": "api_error", "code": "stream_broken", "param": None},
        }
        await exchange.end(before + b"data: " + json.dumps(event).encode() + b"\n\n", status=200, headers=_SSE_HEADERS)


# A request's disconnect watcher starts this long after its work: most answers are over sooner,
# and for them a timer set and cancelled replaces a task, its two steps and a pending receive
# (bench/README.md). A client that leaves is noticed at most this much later.
WATCH_AFTER_SECONDS = 0.05


class _DisconnectWatch:
    """Watches for the client's disconnect while the request's task runs the work.

    The watcher is a task of its own, started :data:`WATCH_AFTER_SECONDS` after the work (unless
    :meth:`stop` came first). On a disconnect it marks the exchange and,
    ``PENDRA_ABANDONED_USAGE_WAIT`` later, cancels the request's task (``expired``), unless
    :meth:`stop` came first.

    Once the response has ended, the watcher is left to finish by itself: the server answers
    a pending ``receive`` with ``http.disconnect`` when the response is complete (ASGI; uvicorn
    wakes it at once), and the watcher then returns without acting. Cancelling it instead
    throws an exception through the server's ``receive``, which cost each request more than
    the watcher itself (bench/README.md).
    """

    __slots__ = ("exchange", "expired", "over", "start", "task", "timer", "watcher")

    def __init__(self, exchange: Exchange) -> None:
        task = asyncio.current_task()
        assert task is not None  # the gateway's request path always runs in a task
        self.task = task
        self.exchange = exchange
        self.expired = False
        self.over = False
        self.timer: asyncio.TimerHandle | None = None
        self.watcher: asyncio.Future[None] | None = None
        self.start = task.get_loop().call_later(WATCH_AFTER_SECONDS, self._start)

    def _start(self) -> None:
        self.watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        receive = self.exchange.receive
        while (await receive())["type"] != "http.disconnect":
            pass
        if self.over:
            return
        self.exchange.client_gone = True
        self.timer = asyncio.get_running_loop().call_later(settings.PENDRA_ABANDONED_USAGE_WAIT, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self.task.cancel()

    def stop(self) -> None:
        """The work is over: no cancellation may follow, and the watcher ends."""
        self.over = True
        self.start.cancel()
        if self.timer is not None:
            self.timer.cancel()
        watcher = self.watcher
        if watcher is not None and not watcher.done() and not self.exchange.ended:
            watcher.cancel()
