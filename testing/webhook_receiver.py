"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 in a thread.

It records every request (headers and raw body) and answers with the next status of its
script (the last one repeats), so a test can make it fail twice and then succeed.
Loopback http is accepted as a webhook URL only because the test settings allow private
URLs (``PENDRA_ALLOW_PRIVATE_WORKER_URLS``, as for the simulators); production wants https.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    statuses: list[int]
    redirect_to: str = ""
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def next_status(self) -> int:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def wait_for(self, count: int, *, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received)} of {count} webhook requests arrived within {timeout} s")
            time.sleep(0.02)
        return list(self.received)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.received.append(Received(self.path, dict(self.headers.items()), body))
            status = receiver.next_status()
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", receiver.redirect_to)
            payload = f"answer {status} from the test receiver".encode()
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@pytest.fixture
def webhook_receiver() -> Iterator[type[Receiver]]:
    """``webhook_receiver(statuses=[500, 200]) -> Receiver`` started on a free port, stopped at teardown."""
    servers: list[ThreadingHTTPServer] = []

    def start(statuses: list[int] | None = None, redirect_to: str = "") -> Receiver:
        receiver = Receiver(statuses=list(statuses or [200]), redirect_to=redirect_to)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return receiver

    yield start  # type: ignore[misc]
    for server in servers:
        server.shutdown()
        server.server_close()
