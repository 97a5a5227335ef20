"""How a web process is started: one command line for `make run`, the benchmarks, the tests and the image.

``python -m pendra_console.serving --host 0.0.0.0 --port 8000 --workers 2`` runs uvicorn
with that command line (the container's default command), after preparing the directory
where its processes count their Prometheus metrics together.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# uvicorn's httptools protocol, sending a response's head with its first body bytes.
HTTP_PROTOCOL = "pendra_console.http_protocol:PendraHttpToolsProtocol"


def uvicorn_command(*, host: str, port: int, workers: int = 1, log_level: str = "info") -> list[str]:
    """uvicorn serving the one ASGI app; the gateway writes its own access lines, and needs lifespan.

    ``--no-proxy-headers``: the client's address is decided by one rule, Pendra's own
    (``PENDRA_TRUSTED_PROXIES``, pendra_console/client_address.py, read right to left). uvicorn's
    would replace the peer first, and with ``FORWARDED_ALLOW_IPS=*`` it takes the *leftmost*
    X-Forwarded-For entry, which the client writes: a key limited to an address range would
    then accept anyone who names an address inside it.

    ``--http``: uvicorn's httptools protocol, with a response's head and first body bytes
    sent in one write (pendra_console/http_protocol.py). ``--no-server-header``: no
    ``server: uvicorn`` on every response, naming the software to whoever probes for it.
    """
    return [
        sys.executable, "-m", "uvicorn", "pendra_console.asgi:application",
        "--host", host, "--port", str(port), "--workers", str(workers),
        "--http", HTTP_PROTOCOL, "--no-server-header",
        "--log-level", log_level, "--no-access-log", "--lifespan", "on", "--no-proxy-headers",
    ]  # fmt: skip


def prepare_multiprocess_dir() -> Path:
    """Make ``PROMETHEUS_MULTIPROC_DIR`` ready for a node about to start; every process inherits it.

    Unset: a new private directory. Set: created if missing and emptied, since files left by a
    previous run would be added to this one's counts. prometheus-client reads the variable when
    it is imported, so this runs before any process of the node imports it.
    """
    raw = os.environ.get(MULTIPROC_ENV, "").strip()
    if raw:
        path = Path(raw)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="pendra-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pendra_console.serving", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("PENDRA_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PENDRA_PORT", "8000")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("PENDRA_WEB_PROCESSES", "1")))
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    prepare_multiprocess_dir()
    command = uvicorn_command(host=args.host, port=args.port, workers=args.workers, log_level=args.log_level)
    # exec: uvicorn becomes this process, so the orchestrator's SIGTERM reaches it directly.
    os.execv(command[0], command)  # noqa: S606 (a fixed argument list, no shell)


if __name__ == "__main__":
    main()
