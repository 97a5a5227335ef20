"""``manage.py simulate_worker``: a simulated OpenAI-compatible GPU worker on 127.0.0.1, in the foreground."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.simulator.server import DEFAULT_MODELS, Faults, Simulator
from apps.workers.model_spec import parse_models

DEFAULT_MODELS_SPEC = ",".join(f"{name}:{kind}" for name, kind in DEFAULT_MODELS.items())


class Command(BaseCommand):
    help = "Run a simulated GPU worker (OpenAI-compatible, with fault knobs) on 127.0.0.1."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8101)
        parser.add_argument("--host", default="127.0.0.1", help="loopback by default; the simulator is for dev/tests")
        parser.add_argument("--name", default="sim")
        parser.add_argument(
            "--models", default=DEFAULT_MODELS_SPEC, help="name:kind,... (kinds: chat, embeddings, image, audio)"
        )
        parser.add_argument("--latency-ms", type=float, default=0.0, help="wait before every answer")
        parser.add_argument("--ttft-ms", type=float, default=0.0, help="wait before the first token")
        parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="wait between stream chunks")
        parser.add_argument("--hang", action="store_true", help="never answer")
        parser.add_argument("--status", type=int, help="answer every /v1 request with this status (500, 503)")
        parser.add_argument("--error-envelope", type=int, help="answer every /v1 request with an OpenAI error envelope")
        parser.add_argument("--reset-after", type=int, help="abort the connection after N stream chunks")
        parser.add_argument("--garbage", action="store_true", help="answer 200 with a body that is not JSON")
        parser.add_argument("--health-status", type=int, help="GET /health answers this status")

    def handle(self, *args: Any, **options: Any) -> None:
        models = parse_models(options["models"])
        bad = {name: kind for name, kind in models.items() if kind not in {"chat", "embeddings", "image", "audio"}}
        if not models or bad:
            raise CommandError(f"--models needs name:kind pairs with kinds chat/embeddings/image/audio; bad: {bad}")
        try:
            faults = Faults.from_mapping(
                {
                    name: options[name]
                    for name in (
                        "latency_ms", "ttft_ms", "chunk_delay_ms", "hang", "status", "error_envelope",
                        "reset_after", "garbage", "health_status",
                    )
                }
            )  # fmt: skip
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        logging.getLogger("pendra.simulator").setLevel(logging.INFO)
        simulator = Simulator(options["name"], models, faults)
        self.stdout.write(
            f"Simulated worker {simulator.name} on http://{options['host']}:{options['port']} "
            f"serving {', '.join(models)}"
        )
        web.run_app(
            simulator.app(),
            host=options["host"],
            port=options["port"],
            handler_cancellation=True,
            access_log=None,
            print=None,
            shutdown_timeout=1.0,
            reuse_address=True,
        )
