"""``manage.py simulate_worker``: a real server in the foreground, with its fault flags."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
from django.conf import settings

from testing.servers import free_port


def test_simulate_worker_serves_until_stopped() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "simulate_worker", "--port", str(port), "--name",
         "cli-sim", "--models", "m1:chat", "--status", "503"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "simulate_worker did not start"
                time.sleep(0.1)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()
        chat = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "m1", "messages": []})
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert health.json() == {"status": "ok", "name": "cli-sim"}
    assert [m["id"] for m in models["data"]] == ["m1"]
    assert chat.status_code == 503  # the --status flag applies to every /v1 request
