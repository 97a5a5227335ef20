"""CPU time per request of the gateway's per-request hooks, measured alone (used by ``ops_bench.py``).

Each measurement runs in a fresh process with the settings under test and counts CPU time
(``time.process_time``, every thread of the process), so other processes on a busy machine do
not inflate it, and work a hook defers to a background thread or a later flush is counted too.

- :func:`metering_cpu_us`: ``apps.gateway.metrics.meter.observe`` and its share of the batched write;
- :func:`tracing_cpu_us`: the tracing hooks of one request with one attempt (``apps.gateway.tracing``:
  start, attempt, finish), with tracing off or on; on, the spans are exported over OTLP/HTTP to
  ``endpoint`` and the export's CPU is counted (the provider is flushed before the clock stops);
  also with 1 % of traces sampled.
  ``mode="none"`` runs the same loop without the hooks: the baseline to subtract.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_PRELUDE = """
import asyncio, sys, time, django
django.setup()
from apps.gateway.exchange import Exchange
from apps.gateway.routes import ROUTES
from apps.workers.selectors import WorkerTarget
CALLS = int(sys.argv[1])
scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
worker = WorkerTarget(id="w1", name="w1", base_url="http://127.0.0.1:1", models={}, dedicated_org_id=None)
def one():
    exchange = Exchange(scope, None, None, "u")
    exchange.route = ROUTES["/v1/chat/completions"]
    exchange.worker = worker
    exchange.attempts = 1
    exchange.status = 200
    exchange.first_byte_at = exchange.started
    return exchange
"""

_METERING = """
from apps.gateway import metrics
exchanges = [one() for _ in range(CALLS)]
async def run():
    for exchange in exchanges[:1000]:
        metrics.meter.observe(exchange, 200, exchange.started)
    metrics.meter.flush()
    started = time.process_time()
    for exchange in exchanges:
        metrics.meter.observe(exchange, 200, exchange.started)
    metrics.meter.flush()  # what the batching defers is counted too
    return started
started = asyncio.run(run())
print((time.process_time() - started) / CALLS * 1e6)
"""

_TRACING = """
from apps.gateway import tracing
from pendra_console import tracing as otel
otel.configure()
hooks = sys.argv[2] == "hooks"
warm, exchanges = [one() for _ in range(1000)], [one() for _ in range(CALLS)]
def run(batch):
    for exchange in batch:
        headers = {}
        if hooks:
            token = tracing.start(exchange)
            with tracing.attempt(exchange, worker, headers):
                pass
            tracing.finish(exchange, token)
run(warm)
if otel._provider is not None:
    otel._provider.force_flush()
started = time.process_time()
run(exchanges)
if otel._provider is not None:
    otel._provider.force_flush()  # the export of these spans is counted too
print((time.process_time() - started) / CALLS * 1e6)
"""


def _measure(code: str, env: dict[str, str], *args: str) -> float:
    with tempfile.TemporaryDirectory(prefix="pendra-hook-cpu-") as metrics_dir:
        output = subprocess.run(
            [sys.executable, "-c", _PRELUDE + code, *args],
            env={**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir, "DJANGO_SETTINGS_MODULE": "pendra_console.settings"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
    return float(output.strip().splitlines()[-1])


def metering_cpu_us(env: dict[str, str], calls: int = 20000) -> float:
    return _measure(_METERING, env, str(calls))


def tracing_cpu_us(env: dict[str, str], *, mode: str, endpoint: str, calls: int = 20000) -> float:
    """``mode``: "none" (the loop alone), "off" (the hooks, tracing off), "on" (every request traced)
    or "sampled" (on, 1 % of new traces sampled: the others' spans record nothing and are not exported)."""
    sampler = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}
    settings = {
        **env,
        **(sampler if mode == "sampled" else {}),
        "PENDRA_OTEL_ENABLED": "1" if mode in ("on", "sampled") else "0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_MAX_QUEUE_SIZE": str(calls * 2),  # none dropped: every span's export is counted
    }
    # A traced request costs a few hundred µs: fewer of them measure it as well.
    count = calls // 4 if mode == "on" else calls
    return _measure(_TRACING, settings, str(count), "loop" if mode == "none" else "hooks")
