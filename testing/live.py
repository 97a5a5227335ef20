"""A real ASGI server (uvicorn) in a thread, serving the project's one ASGI application.

Tests that talk to it over HTTP (the OpenAI SDK, streaming, disconnects) need
``django_db(transaction=True)`` so the server's threads see their rows.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import uvicorn

from pendra_console.serving import HTTP_PROTOCOL
from testing.servers import free_port


class LiveServer:
    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            proxy_headers=False,  # as production serves (pendra_console/serving.py)
            http=HTTP_PROTOCOL,  # and with the same HTTP protocol
            server_header=False,
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


def session_database_url() -> str:
    """The test session's database as a URL, for server processes started by a test."""
    from django.db import connection

    from testing.require import require_service

    db = connection.settings_dict
    require_service(connection.vendor == "postgresql", "the session's PostgreSQL")
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class ServerProcesses:
    """``count`` uvicorn processes serving the project with ``env``; their URLs inside ``with``."""

    def __init__(self, env: dict[str, str], *, count: int = 1, workers: int = 1) -> None:
        self.env = env
        self.count = count
        self.workers = workers
        self.started: list[tuple[subprocess.Popen[bytes], str, str]] = []

    def __enter__(self) -> list[str]:
        for _ in range(self.count):
            port = free_port()
            log = tempfile.NamedTemporaryFile(prefix=f"pendra-uvicorn-{port}-", suffix=".log", delete=False)
            # As production starts a node (pendra_console.serving), each in a process group of its
            # own, so a signal reaches one node's processes and no other's.
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "pendra_console.serving", "--host", "127.0.0.1", "--port", str(port)),
                    *("--workers", str(self.workers), "--log-level", "warning"),
                ],
                cwd=Path(__file__).resolve().parent.parent,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.started.append((process, f"http://127.0.0.1:{port}", log.name))
        try:
            for process, url, log_path in self.started:
                self._wait_ready(process, url, log_path)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return [url for _, url, _ in self.started]

    @staticmethod
    def _wait_ready(process: subprocess.Popen[bytes], url: str, log_path: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {Path(log_path).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:  # noqa: S310 (loopback)
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server at {url} did not start within 60 s")

    def signal(self, index: int, signum: int) -> subprocess.Popen[bytes]:
        """Send ``signum`` to every process of node ``index`` (as an orchestrator stopping a pod would)."""
        process = self.started[index][0]
        if process.poll() is None:
            os.killpg(process.pid, signum)
        return process

    def log(self, index: int) -> str:
        return Path(self.started[index][2]).read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        for index in range(len(self.started)):
            self.signal(index, signal.SIGTERM)
        for process, _, log_path in self.started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            Path(log_path).unlink(missing_ok=True)
        self.started.clear()
