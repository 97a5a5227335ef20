"""A simulated GPU worker: a real OpenAI-compatible HTTP server (aiohttp) for dev, tests and benchmarks.

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` (plain and SSE),
``POST /v1/embeddings``, ``POST /v1/images/generations``, ``POST /v1/audio/transcriptions``,
``POST /v1/audio/speech``. Everything it answers is deterministic: token counts are word
counts (prompt: the words of every message's content; completion: ``max_tokens`` or 16
generated words), vectors derive from a hash of the input.

Faults, instance-wide (``--flags``, ``POST /_sim/faults``) or for one request (``x-sim-*``
headers; ``x-sim-only: <name>`` limits a request's header faults to the simulator of that
name, so a test can make one of two workers fail):

================  ======================  =========================================================
field             header                  effect
================  ======================  =========================================================
latency_ms        x-sim-latency-ms        wait before answering (every route but /_sim)
hang              x-sim-hang: 1           never answer (every route but /_sim)
health_status     (none)                  /health answers this status (e.g. 503)
ttft_ms           x-sim-ttft-ms           wait before the first token / the body (inference routes)
chunk_delay_ms    x-sim-chunk-delay-ms    wait between stream chunks
status            x-sim-status            answer this status (500, 503) with a plain-text body
                                          (this and the rows below: inference routes, POST /v1/...)
error_envelope    x-sim-error-envelope    answer this status with an OpenAI error envelope
reset_after       x-sim-reset-after       abort the TCP connection after N stream chunks
                                          (a non-streamed request is reset before any byte)
garbage           x-sim-garbage: 1        200 with a body that is not JSON
prompt_tokens     x-sim-prompt-tokens     report this many prompt tokens for a chat completion
                                          (any integer >= 0: a worker's numbers are not trusted)
================  ======================  =========================================================

``GET /_sim/stats`` counts requests per path, completed streams and client disconnects, and
keeps the last 50 requests' ``x-request-id``, ``traceparent`` and whether an ``Authorization`` header came.
:class:`SimulatorServer` runs one in a thread (tests); ``manage.py simulate_worker`` runs one
in the foreground.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import io
import json
import logging
import math
import socket
import struct
import threading
import time
import uuid
import wave
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

logger = logging.getLogger("pendra.simulator")

DEFAULT_MODELS: dict[str, str] = {
    "sim-chat": "chat",
    "sim-embed": "embeddings",
    "sim-image": "image",
    "sim-whisper": "audio",
    "sim-tts": "audio",
}
DEFAULT_COMPLETION_TOKENS = 16
MAX_COMPLETION_TOKENS = 4096
EMBEDDING_DIM = 8
RECENT_REQUESTS_KEPT = 50
_VOCABULARY = ("the", "simulated", "worker", "answers", "with", "deterministic", "words", "for", "pendra")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Faults:
    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    hang: bool = False
    status: int | None = None
    error_envelope: int | None = None
    reset_after: int | None = None
    garbage: bool = False
    health_status: int | None = None
    prompt_tokens: int | None = None

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> Faults:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
        faults = cls()
        for name, value in values.items():
            setattr(faults, name, _coerce(name, value))
        return faults

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_BOOL_FAULTS = {"hang", "garbage"}
_FLOAT_FAULTS = {"latency_ms", "ttft_ms", "chunk_delay_ms"}
_HEADER_FAULTS = {
    "x-sim-latency-ms": "latency_ms",
    "x-sim-ttft-ms": "ttft_ms",
    "x-sim-chunk-delay-ms": "chunk_delay_ms",
    "x-sim-hang": "hang",
    "x-sim-status": "status",
    "x-sim-error-envelope": "error_envelope",
    "x-sim-reset-after": "reset_after",
    "x-sim-garbage": "garbage",
    "x-sim-prompt-tokens": "prompt_tokens",
}


def _coerce(name: str, value: Any) -> Any:
    if value is None:
        return False if name in _BOOL_FAULTS else (0.0 if name in _FLOAT_FAULTS else None)
    if name in _BOOL_FAULTS:
        return str(value).strip().lower() in {"1", "true", "yes", "on"}
    if name in _FLOAT_FAULTS:
        number = float(value)
        if not 0 <= number <= 3_600_000:
            raise ValueError(f"{name} must be between 0 and 3600000")
        return number
    integer = int(value)
    if name in {"status", "error_envelope", "health_status"} and not 100 <= integer <= 599:
        raise ValueError(f"{name} must be an HTTP status")
    if name in {"reset_after", "prompt_tokens"} and integer < 0:
        raise ValueError(f"{name} must be >= 0")
    return integer


@dataclass(slots=True)
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    completed_streams: int = 0
    disconnects: int = 0
    resets: int = 0
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_REQUESTS_KEPT))

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "completed_streams": self.completed_streams,
            "disconnects": self.disconnects,
            "resets": self.resets,
            "recent": list(self.recent),
        }


def _words(text: str) -> int:
    return len(text.split())


def _content_words(content: Any) -> int:
    if isinstance(content, str):
        return _words(content)
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return sum(_words(part.get("text", "")) for part in content if isinstance(part, dict))
    return 0


def openai_error(status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> web.Response:  # fmt: skip
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return web.json_response(body, status=status)


def tiny_png(seed: str, size: int = 8) -> bytes:
    """A real ``size`` x ``size`` RGB PNG whose colour depends on ``seed``."""
    red, green, blue = hashlib.sha256(seed.encode()).digest()[:3]
    row = b"\x00" + bytes((red, green, blue)) * size
    raw = row * size

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def tiny_wav(text: str, *, rate: int = 8000) -> bytes:
    """A real mono 16-bit WAV: a short tone whose length grows with the text (0.1-1 s)."""
    seconds = min(1.0, max(0.1, 0.02 * _words(text)))
    frames = int(rate * seconds)
    samples = struct.pack(f"<{frames}h", *(int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(frames)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples)
    return buffer.getvalue()


def embedding_vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(byte - 127.5) / 127.5 for byte in digest[:EMBEDDING_DIM]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


FAULTS = web.RequestKey("faults", Faults)


class Simulator:
    """The application and its mutable state (faults, stats); one per simulated worker."""

    def __init__(self, name: str = "sim", models: dict[str, str] | None = None, faults: Faults | None = None) -> None:
        self.name = name
        self.models = dict(models or DEFAULT_MODELS)
        self.faults = faults or Faults()
        self.stats = Stats()
        self.created = int(time.time())

    # --- plumbing ----------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/images/generations", self.images)
        app.router.add_post("/v1/audio/transcriptions", self.transcriptions)
        app.router.add_post("/v1/audio/speech", self.speech)
        app.router.add_post("/_sim/faults", self.set_faults)
        app.router.add_get("/_sim/faults", self.get_faults)
        app.router.add_get("/_sim/stats", self.get_stats)
        app.router.add_post("/_sim/stats/reset", self.reset_stats)
        return app

    def request_faults(self, request: web.Request) -> Faults:
        """The instance's faults, overridden by this request's ``x-sim-*`` headers (if meant for us)."""
        faults = dataclasses.replace(self.faults)
        only = request.headers.get("x-sim-only")
        if only is not None and only.strip() != self.name:
            return faults
        for header, name in _HEADER_FAULTS.items():
            if header in request.headers:
                setattr(faults, name, _coerce(name, request.headers[header]))
        return faults

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sim/"):
            return await handler(request)
        request_id = request.headers.get("x-request-id", "")
        self.stats.requests[request.path] += 1
        self.stats.recent.append(
            {
                "path": request.path,
                "method": request.method,
                "request_id": request_id,
                "authorization": "authorization" in request.headers,
                "traceparent": request.headers.get("traceparent"),
            }
        )
        logger.info("%s %s %s x-request-id=%s", self.name, request.method, request.path, request_id or "-")
        try:
            faults = self.request_faults(request)
        except ValueError as exc:
            return openai_error(400, f"bad x-sim-* header: {exc}", code="sim_bad_header")
        request[FAULTS] = faults
        try:
            if faults.latency_ms:
                await asyncio.sleep(faults.latency_ms / 1000)
            if faults.hang:
                await asyncio.Event().wait()  # until the client goes away or the server stops
            if request.path == "/health":
                if faults.health_status:
                    return web.json_response({"status": "failing"}, status=faults.health_status)
                return await handler(request)
            if request.method != "POST":  # /v1/models stays truthful: the model list is not inference
                return await handler(request)
            if faults.status:
                return web.Response(status=faults.status, text=f"simulated upstream failure ({faults.status})")
            if faults.error_envelope:
                return openai_error(faults.error_envelope, "Simulated error from the worker.", code="sim_error")
            if faults.garbage:
                return web.Response(status=200, body=b"\x00\xffnot json <html>garbage", content_type="application/json")
            return await handler(request)
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client disconnects (handler_cancellation=True).
            self.stats.disconnects += 1
            raise
        except ConnectionResetError:
            self.stats.disconnects += 1
            raise

    async def _json(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return openai_error(400, "The body is not valid JSON.", code="invalid_json")
        if not isinstance(body, dict):
            return openai_error(400, "The body must be a JSON object.", code="invalid_json")
        return body

    def _model(self, body: dict[str, Any], kind: str) -> str | web.Response:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return openai_error(400, "you must provide a model parameter", param="model", code="missing_model")
        if self.models.get(model) != kind:
            return openai_error(
                404, f"The model `{model}` does not exist or is not a {kind} model.", param="model",
                code="model_not_found",
            )  # fmt: skip
        return model

    async def _before_body(self, request: web.Request) -> web.Response | None:
        """Time to first token, and a reset before any byte for a non-streamed request."""
        faults: Faults = request[FAULTS]
        if faults.ttft_ms:
            await asyncio.sleep(faults.ttft_ms / 1000)
        if faults.reset_after is not None:
            self._reset(request)
            return web.Response(status=500)  # never sent: the connection is gone
        return None

    def _reset(self, request: web.Request) -> None:
        """Abort with a TCP RST (SO_LINGER 0), as a crashed worker would."""
        self.stats.resets += 1
        transport = request.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    # --- routes ------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "name": self.name})

    async def list_models(self, request: web.Request) -> web.Response:
        data = [
            {"id": name, "object": "model", "created": self.created, "owned_by": "pendra-sim", "kind": kind}
            for name, kind in self.models.items()
        ]
        return web.json_response({"object": "list", "data": data})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        model = self._model(body, "chat")
        if isinstance(model, web.Response):
            return model
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return openai_error(400, "messages must be a non-empty array", param="messages")
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is None:
            limit = DEFAULT_COMPLETION_TOKENS
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_COMPLETION_TOKENS:
            return openai_error(400, f"max_tokens must be an integer 1-{MAX_COMPLETION_TOKENS}", param="max_tokens")
        prompt_tokens = sum(_content_words(m.get("content")) for m in messages if isinstance(m, dict))
        reported: Faults = request[FAULTS]
        if reported.prompt_tokens is not None:
            prompt_tokens = reported.prompt_tokens
        words = [_VOCABULARY[i % len(_VOCABULARY)] for i in range(limit)]
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": limit, "total_tokens": prompt_tokens + limit}
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            return await self._stream_chat(request, completion_id, created, model, words, usage, include_usage)
        early = await self._before_body(request)
        if early is not None:
            return early
        return web.json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": f"sim-{self.name}",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": " ".join(words), "refusal": None},
                        "logprobs": None,
                        "finish_reason": "length"
                        if body.get("max_tokens") or body.get("max_completion_tokens")
                        else "stop",
                    }
                ],
                "usage": usage,
            }
        )

    async def _stream_chat(
        self,
        request: web.Request,
        completion_id: str,
        created: int,
        model: str,
        words: list[str],
        usage: dict[str, int],
        include_usage: bool,
    ) -> web.StreamResponse:
        faults: Faults = request[FAULTS]

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": f"sim-{self.name}",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                payload["usage"] = None
            return payload

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": word if i == 0 else f" {word}"}) for i, word in enumerate(words)]
        events.append(chunk({}, "stop"))
        if include_usage:
            events.append({**chunk({}), "choices": [], "usage": usage})

        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        if faults.ttft_ms:
            await asyncio.sleep(faults.ttft_ms / 1000)
        for index, event in enumerate(events):
            if faults.reset_after is not None and index >= faults.reset_after:
                await asyncio.sleep(0.02)  # let the chunks already written reach the client before the RST
                self._reset(request)
                return response
            if index and faults.chunk_delay_ms:
                await asyncio.sleep(faults.chunk_delay_ms / 1000)
            await response.write(b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        self.stats.completed_streams += 1
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        model = self._model(body, "embeddings")
        if isinstance(model, web.Response):
            return model
        raw = body.get("input")
        inputs: list[str]
        if isinstance(raw, str):
            inputs = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
            inputs = list(raw)
        elif isinstance(raw, list) and raw and all(isinstance(item, int) for item in raw):
            inputs = [" ".join(map(str, raw))]  # one pre-tokenised input
        elif isinstance(raw, list) and raw and all(isinstance(item, list) for item in raw):
            inputs = [" ".join(map(str, item)) for item in raw]
        else:
            return openai_error(400, "input must be a string or an array of strings", param="input")
        encoding = body.get("encoding_format") or "float"
        if encoding not in {"float", "base64"}:
            return openai_error(400, "encoding_format must be float or base64", param="encoding_format")
        early = await self._before_body(request)
        if early is not None:
            return early
        data = []
        for index, text in enumerate(inputs):
            vector = embedding_vector(text)
            embedding: Any = (
                base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if encoding == "base64" else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(max(1, _words(text)) for text in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def images(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        model = self._model(body, "image")
        if isinstance(model, web.Response):
            return model
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return openai_error(400, "prompt must be a non-empty string", param="prompt")
        count = body.get("n", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10:
            return openai_error(400, "n must be an integer 1-10", param="n")
        response_format = body.get("response_format") or "url"
        if response_format not in {"url", "b64_json"}:
            return openai_error(400, "response_format must be url or b64_json", param="response_format")
        early = await self._before_body(request)
        if early is not None:
            return early
        data = []
        for index in range(count):
            encoded = base64.b64encode(tiny_png(f"{prompt}#{index}")).decode()
            if response_format == "b64_json":
                data.append({"b64_json": encoded, "revised_prompt": prompt})
            else:
                data.append({"url": f"data:image/png;base64,{encoded}", "revised_prompt": prompt})
        tokens = _words(prompt)
        return web.json_response(
            {
                "created": int(time.time()),
                "data": data,
                "usage": {
                    "input_tokens": tokens,
                    "output_tokens": count,
                    "total_tokens": tokens + count,
                    "input_tokens_details": {"text_tokens": tokens, "image_tokens": 0},
                },
            }
        )

    async def transcriptions(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            return openai_error(400, "Send multipart/form-data with `file` and `model`.", param="file")
        try:
            form = await request.post()
        except ValueError:
            return openai_error(400, "The multipart body is malformed.", param="file")
        upload = form.get("file")
        model = form.get("model")
        if not isinstance(model, str) or not model:
            return openai_error(400, "you must provide a model parameter", param="model", code="missing_model")
        if self.models.get(model) != "audio":
            return openai_error(404, f"The model `{model}` does not exist.", param="model", code="model_not_found")
        if upload is None or isinstance(upload, str):
            return openai_error(400, "file is required (multipart file field)", param="file")
        audio = upload.file.read()
        response_format = form.get("response_format") or "json"
        early = await self._before_body(request)
        if early is not None:
            return early
        text = f"simulated transcript of {len(audio)} bytes from {upload.filename or 'audio'}"
        if response_format == "text":
            return web.Response(text=text)
        output_tokens = _words(text)
        input_tokens = max(1, len(audio) // 1024)
        return web.json_response(
            {
                "text": text,
                "usage": {
                    "type": "tokens",
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "total_tokens": input_tokens + output_tokens,
                },
            }
        )

    async def speech(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        model = self._model(body, "audio")
        if isinstance(model, web.Response):
            return model
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            return openai_error(400, "input must be a non-empty string", param="input")
        early = await self._before_body(request)
        if early is not None:
            return early
        return web.Response(body=tiny_wav(text), content_type="audio/wav")

    # --- control -----------------------------------------------------------

    async def set_faults(self, request: web.Request) -> web.Response:
        """Replace the instance-wide faults (``{}`` clears them all)."""
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("send a JSON object of faults")
            self.faults = Faults.from_mapping(body)
        except (ValueError, TypeError) as exc:
            return web.json_response({"detail": str(exc)}, status=400)
        logger.info("%s faults set: %s", self.name, self.faults.as_dict())
        return web.json_response(self.faults.as_dict())

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.as_dict())

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"name": self.name, **self.stats.as_dict()})

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.stats = Stats()
        return web.json_response({"name": self.name, **self.stats.as_dict()})


async def start_site(simulator: Simulator, host: str, port: int) -> tuple[web.AppRunner, int]:
    # handler_cancellation: a client that goes away cancels its handler, which is how the
    # simulator notices (and counts) a disconnect mid-stream at once.
    runner = web.AppRunner(simulator.app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    addresses = runner.addresses
    return runner, int(addresses[0][1]) if addresses else port


class SimulatorServer:
    """A simulator in its own thread and event loop, on 127.0.0.1; ``stop()`` then ``start()`` reuses the port."""

    def __init__(self, simulator: Simulator, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> SimulatorServer:
        if self.running:
            return self
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._runner, self.port = loop.run_until_complete(start_site(self.simulator, self.host, self.port))
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            # Handlers still hanging (x-sim-hang) are cancelled, so nothing outlives the loop.
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"simulator-{self.simulator.name}", daemon=True)
        self._thread.start()
        started.wait(timeout=10)
        if failure:
            self._thread.join(timeout=5)
            self._thread = None
            raise RuntimeError(f"simulator {self.simulator.name} could not start on {self.url}") from failure[0]
        return self

    def stop(self) -> None:
        if not self.running or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
        self._loop = None
        self._runner = None
