"""A real ASGI server (uvicorn) in a thread, serving the project's one ASGI application.

Tests that talk to it over HTTP (the OpenAI SDK, streaming, disconnects) need
``django_db(transaction=True)`` so the server's threads see their rows.
"""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn

from testing.servers import free_port


class LiveServer:
    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live ASGI server did not start")
            time.sleep(0.01)
        return self

    def settle(self, timeout: float = 5.0) -> None:
        """Wait for in-flight requests to finish, then write their records.

        Run before the test database is flushed: a record batch being inserted while
        TRUNCATE runs deadlocks in PostgreSQL.
        """
        from apps.requestlog.recorder import recorder

        deadline = time.monotonic() + timeout
        while self.server.server_state.tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        recorder.flush()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
