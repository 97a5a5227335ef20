"""The benchmarks' canned upstream: nginx answering fixed OpenAI answers, the workloads, and wrk.

nginx answers a chat completion and an embedding on one port and an SSE stream (three
chunks, a usage chunk, ``data: [DONE]``) on another, at almost no CPU, so a benchmark
measures the proxy in front of it, not a simulator.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from bench.gateway_bench import COMPLETION, parse_wrk

EMBEDDING = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]}],
    "model": "bench-embed",
    "usage": {"prompt_tokens": 1, "total_tokens": 1},
}


def _chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "bench-stream",
        "choices": [choice],
    }


STREAM_EVENTS = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "ok"}),
    _chunk({}, "stop"),
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "bench-stream",
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    },
]
SSE = "".join(f"data: {json.dumps(event)}\n\n" for event in STREAM_EVENTS) + "data: [DONE]\n\n"

WORKLOADS = {
    "chat": {"model": "bench-chat", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 1},
    "stream": {
        "model": "bench-stream",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 1,
        "stream": True,
    },
    "embeddings": {"model": "bench-embed", "input": "hello"},
}


def _literal(text: str) -> str:
    """``text`` as an nginx single-quoted string (nginx reads \\n, \\" and \\\\ escapes there)."""
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


def _models(*names: str) -> dict[str, object]:
    return {"object": "list", "data": [{"id": name, "object": "model"} for name in names]}


def nginx_config(json_port: int, sse_port: int, workdir: str) -> str:
    stream_models = _literal(json.dumps(_models("bench-stream")))
    return f"""
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    keepalive_requests 10000000;
    server {{
        listen 127.0.0.1:{json_port};
        default_type application/json;
        location = /health {{ return 200 '{{"status": "ok"}}'; }}
        location = /v1/models {{ return 200 '{_literal(json.dumps(_models("bench-chat", "bench-embed")))}'; }}
        location = /v1/embeddings {{ return 200 '{_literal(json.dumps(EMBEDDING))}'; }}
        location / {{ return 200 '{_literal(json.dumps(COMPLETION))}'; }}
    }}
    server {{
        listen 127.0.0.1:{sse_port};
        location = /health {{ default_type application/json; return 200 '{{"status": "ok"}}'; }}
        location = /v1/models {{ default_type application/json; return 200 '{stream_models}'; }}
        location / {{ default_type text/event-stream; return 200 '{_literal(SSE)}'; }}
    }}
}}
"""


def wrk(
    url: str, body: dict[str, object], *, key: str, duration: int, connections: int, workdir: str, cpu: str
) -> dict[str, float]:
    script = Path(workdir, f"wrk-{os.getpid()}.lua")
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url]
    if cpu:
        command = ["taskset", "-c", cpu, *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=True)
    return parse_wrk(done.stdout)
