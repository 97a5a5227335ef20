"""How a web process is started: one command line for `make run`, the benchmarks and the tests."""

from __future__ import annotations

import sys


def uvicorn_command(*, host: str, port: int, workers: int = 1, log_level: str = "info") -> list[str]:
    """uvicorn serving the one ASGI app; the gateway writes its own access lines, and needs lifespan."""
    return [
        sys.executable, "-m", "uvicorn", "pendra_console.asgi:application",
        "--host", host, "--port", str(port), "--workers", str(workers),
        "--log-level", log_level, "--no-access-log", "--lifespan", "on",
    ]  # fmt: skip
