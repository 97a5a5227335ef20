"""Hostile or broken workers for egress tests: a loopback HTTP server answering as a test scripts it.

``scripted_worker(answer)`` starts one on a free port. ``answer(method, path, headers, body)``
returns ``(status, headers, body)`` where ``body`` is bytes or an iterable of byte chunks
(each written and flushed as it comes, so a stream can be scripted), or ``None`` for the
default: ``/health`` answers 200 and ``/v1/models`` lists ``scripted-chat``. Every request
the server saw is in ``.hits`` as ``(method, path, headers)``. ``register_scripted(worker)``
registers it and probes it healthy, as ``register_sim`` does for a simulator.
``keep_alive=True`` speaks HTTP/1.1 instead, keeping connections open (a body given as bytes
gets its Content-Length); ``.peers`` lists, for each request, the port of the connection it came on.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from testing.servers import free_port

Answer = tuple[int, dict[str, str], bytes | Iterable[bytes]]
Script = Callable[[str, str, dict[str, str], bytes], Answer | None]

MODEL = "scripted-chat"
SSE = {"Content-Type": "text/event-stream"}
JSON = {"Content-Type": "application/json"}
# A chat completion of MODEL as a worker answers it: 3 tokens of usage.
COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
}


def sse_chunk(content: str, **extra: Any) -> bytes:
    """One chat-completion chunk of ``MODEL`` as a server-sent event; ``extra`` adds fields (e.g. usage)."""
    event = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
        **extra,
    }
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def _default(method: str, path: str) -> Answer:
    if path == "/health":
        return 200, {"Content-Type": "application/json"}, b'{"status": "ok"}'
    if path == "/v1/models":
        body = json.dumps({"object": "list", "data": [{"id": MODEL, "kind": "chat"}]}).encode()
        return 200, {"Content-Type": "application/json"}, body
    return 404, {"Content-Type": "application/json"}, b'{"detail": "not scripted"}'


class ScriptedWorker:
    def __init__(self, script: Script | None = None, *, host: str = "127.0.0.1", keep_alive: bool = False) -> None:
        self.script = script
        self.hits: list[tuple[str, str, dict[str, str]]] = []
        self.peers: list[tuple[str, int]] = []  # (path, the client's port) for each request
        self.port = free_port()
        self.host = host
        worker = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: the body ends when the connection closes, so a script may stream without lengths.
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                worker.hits.append((self.command, self.path, headers))
                worker.peers.append((self.path, self.client_address[1]))
                answer = worker.script(self.command, self.path, headers, body) if worker.script else None
                status, reply_headers, content = answer or _default(self.command, self.path)
                self.send_response(status)
                for name, value in reply_headers.items():
                    self.send_header(name, value)
                if keep_alive and isinstance(content, bytes) and "Content-Length" not in reply_headers:
                    self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                chunks = [content] if isinstance(content, bytes) else content
                try:
                    for chunk in chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _serve
            do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def inference_hits(self) -> list[tuple[str, str, dict[str, str]]]:
        return [hit for hit in self.hits if hit[1] not in {"/health", "/v1/models"}]

    def start(self) -> ScriptedWorker:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted_worker() -> Iterator[Callable[..., ScriptedWorker]]:
    """``scripted_worker(script=None, host="127.0.0.1", keep_alive=False) -> ScriptedWorker``, started;
    stopped at teardown."""
    started: list[ScriptedWorker] = []

    def start(script: Script | None = None, *, host: str = "127.0.0.1", keep_alive: bool = False) -> ScriptedWorker:
        worker = ScriptedWorker(script, host=host, keep_alive=keep_alive).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def register_scripted(db: None) -> Callable[..., Any]:
    """``register_scripted(worker, name="scripted") -> Worker``: registered, probed and healthy."""
    from apps.workers import health, services
    from apps.workers.models import WorkerState

    def register(worker: ScriptedWorker, *, name: str = "scripted") -> Any:
        row = services.worker_register(name=name, base_url=worker.url, models={MODEL: "chat"}, actor=None)
        row = health.probe_worker(str(row.pk))
        assert row is not None and row.state == WorkerState.HEALTHY, f"{worker.url}: {row and row.last_error}"
        from pendra_console.asgi import application

        application.pool.invalidate()
        return row

    return register
