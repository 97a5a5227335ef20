"""``make run``: everything a laptop needs, in one command, on the embedded defaults.

Migrates, collects static files, seeds the demo organisation, starts two simulated GPU
workers and registers them, then runs a Celery worker, Celery beat and the ASGI server
(uvicorn) until Ctrl-C, which stops them all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from io import StringIO
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from pendra_console.serving import uvicorn_command


def simulators() -> list[tuple[str, int]]:
    """sim-a, sim-b, ... on the ports in ``PENDRA_SIM_PORTS`` (default 8101,8102), so two can run side by side."""
    raw = os.environ.get("PENDRA_SIM_PORTS", "8101,8102")
    try:
        ports = [int(port) for port in raw.split(",") if port.strip()]
    except ValueError:
        raise CommandError(f"PENDRA_SIM_PORTS={raw!r} is not a comma-separated list of ports") from None
    if not ports or len(ports) > 26 or not all(0 < port < 65536 for port in ports):
        raise CommandError(f"PENDRA_SIM_PORTS={raw!r}: give 1 to 26 ports between 1 and 65535")
    return [(f"sim-{chr(ord('a') + index)}", port) for index, port in enumerate(ports)]


class Command(BaseCommand):
    help = "Serve the console, the /v1 gateway, Celery and two simulated GPU workers (the embedded set-up)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("PENDRA_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PENDRA_PORT", "8000")))
        parser.add_argument("--no-simulators", action="store_true", help="do not start the two simulated workers")

    def handle(self, *args: Any, host: str, port: int, no_simulators: bool, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        self.stdout.write("Database migrated and static files collected.")

        processes: list[subprocess.Popen[bytes]] = []
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        celery = [sys.executable, "-m", "celery", "-A", "pendra_console"]

        sims = [] if no_simulators else simulators()
        for name, sim_port in sims:
            processes.append(subprocess.Popen([*manage, "simulate_worker", "--port", str(sim_port), "--name", name]))

        demo = StringIO()
        call_command("seed_demo", "--json", stdout=demo)
        seeded = json.loads(demo.getvalue())

        for name, sim_port in sims:
            call_command("register_worker", name, f"http://127.0.0.1:{sim_port}", "--probe", stdout=StringIO())

        processes.append(subprocess.Popen([*celery, "worker", "--loglevel", "INFO", "--concurrency", "2"]))
        processes.append(subprocess.Popen([*celery, "beat", "--loglevel", "INFO"]))
        if settings.PENDRA_RECORD_HANDOFF == "redis":
            # With REDIS_URL records wait in the Redis Stream for this writer (apps/requestlog/handoff.py).
            processes.append(subprocess.Popen([*manage, "record_writer"]))
        processes.append(subprocess.Popen(uvicorn_command(host=host, port=port)))

        owner = seeded["users"]["owner"]
        self.stdout.write(
            self.style.SUCCESS(
                f"\nPendra Console: http://{host}:{port}/\n"
                f"  sign in as {owner['email']} / {owner['password']}\n"
                f"  owner's API key: {seeded['keys']['owner']}\n"
                f"  try: curl http://{host}:{port}/v1/chat/completions "
                f"-H 'Authorization: Bearer {seeded['keys']['owner']}' "
                "-H 'Content-Type: application/json' "
                '-d \'{"model": "sim-chat", "messages": [{"role": "user", "content": "Hello"}]}\'\n'
                "Ctrl-C stops everything.\n"
            )
        )
        # A simulator may be stopped on purpose (to watch health checks react); the rest may not.
        self._wait(processes, essential=processes[len(sims) :])

    def _wait(self, processes: list[subprocess.Popen[bytes]], *, essential: list[subprocess.Popen[bytes]]) -> None:
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(process.poll() is None for process in essential):
            time.sleep(0.5)
        for process in processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 10
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
