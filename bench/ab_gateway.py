"""Two versions of the gateway under the same load, in turns: is B slower than A?

On a shared machine one version's runs followed by the other's measure the neighbours as
much as the code. This runs the versions alternately (A, B, A, B, ...) against the same
PostgreSQL, Redis and static upstream, each from its own git checkout, and reports for
each the median throughput and the median CPU time the gateway process spent per request
(its process group's, from ``/proc``). CPU per request barely moves with load from elsewhere, so it is the
figure to trust when the throughput runs spread.

Usage::

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/ab_gateway.py /tmp/before . [--rounds 4] [--duration 10]
        [--env-a NAME=VALUE] [--env-b NAME=VALUE] [--labels before,after] [--shell-b controls]
        [--together --connections 16] [--workload chat|stream|embeddings]

``--shell-b controls`` sets every per-key control and hard budgets (none binding) on B's org first.

``--together`` loads both versions in the same seconds, each from its own wrk, instead of
in turns: on a busy machine, the paired rounds then share whatever else it does.

Each version is started by its own checkout's ``uvicorn_command``. Both checkouts run with
this interpreter (the virtualenv must satisfy both). One uvicorn process each, so its CPU
is one process's; 32 wrk connections; loopback only; every server stops at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import procs  # noqa: E402
from bench.canned import WORKLOADS, nginx_config, wrk  # noqa: E402
from bench.gateway_bench import BIG_PLAN, bench_env, wait_http  # noqa: E402
from bench.ops_bench import group_cpu_seconds  # noqa: E402
from testing import servers  # noqa: E402


class Version:
    """One checkout, its own database and Redis db, seeded once."""

    def __init__(
        self, label: str, tree: Path, index: int, base_env: dict[str, str], extra: dict[str, str], shell: str = ""
    ) -> None:
        self.label, self.tree, self.shell = label, tree.resolve(), shell
        self.env = {**base_env, **extra}
        self.env["DATABASE_URL"] = base_env["DATABASE_URL"].rsplit("/", 1)[0] + f"/ab{index}"
        self.env["REDIS_URL"] = f"{base_env['REDIS_URL'].rstrip('/')}/{index + 1}"
        self.env["PENDRA_VAR_DIR"] = tempfile.mkdtemp(prefix=f"pendra-ab{index}-")
        self.rps: list[float] = []
        self.cpu_us: list[float] = []
        self.key = ""

    def manage(self, *args: str, capture: bool = False) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.tree,
            env=self.env,
            check=True,
            capture_output=capture,
            text=True,
        )
        return done.stdout if capture else ""

    def prepare(self, upstream: str, stream_upstream: str) -> None:
        self.manage("migrate", "-v0")
        self.manage("collectstatic", "--noinput", "-v0")
        seeded = json.loads(self.manage("seed_demo", "--json", capture=True))
        self.manage("shell", "-c", BIG_PLAN.format(org=seeded["org"]))
        models = "bench-chat:chat,bench-embed:embeddings"
        self.manage("register_worker", "bench-nginx", upstream, "--models", models, "--probe", capture=True)
        self.manage(
            "register_worker", "bench-sse", stream_upstream, "--models", "bench-stream:chat", "--probe", capture=True
        )
        self.key = seeded["keys"]["owner"]
        if self.shell:  # e.g. budgets and key controls set on one side (CONTROLS_ON)
            self.manage("shell", "-c", self.shell.format(org=seeded["org"]))

    def serving_command(self, port: int) -> list[str]:
        """The command line this checkout serves itself with (its own ``uvicorn_command``)."""
        program = (
            "import json, sys; from pendra_console.serving import uvicorn_command; "
            "print(json.dumps(uvicorn_command(host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')))"
        )
        command = [sys.executable, "-c", program, str(port)]
        done = subprocess.run(command, cwd=self.tree, check=True, capture_output=True)
        return list(json.loads(done.stdout))

    def start(self) -> tuple[subprocess.Popen[bytes], str]:
        port = servers.free_port()
        server = subprocess.Popen(self.serving_command(port), cwd=self.tree, env=self.env, start_new_session=True)
        wait_http(f"http://127.0.0.1:{port}/healthz")
        return server, f"http://127.0.0.1:{port}"

    def record(self, rps: float, spent: float, duration: int) -> None:
        requests = rps * duration
        self.rps.append(rps)
        self.cpu_us.append(spent / requests * 1e6 if requests else float("nan"))
        print(f"{self.label}: {rps:.0f} requests/s, {self.cpu_us[-1]:.0f} µs CPU/request", flush=True)

    def run(self, *, duration: int, connections: int, workdir: str, workload: str) -> None:
        server, base = self.start()
        try:
            url, body = _target(base, workload)
            wrk(url, body, key=self.key, duration=2, connections=connections, workdir=workdir, cpu="")  # warm
            before = group_cpu_seconds(server.pid)
            result = wrk(url, body, key=self.key, duration=duration, connections=connections, workdir=workdir, cpu="")
            spent = group_cpu_seconds(server.pid) - before
        finally:
            procs.stop([server])
        self.record(result["rps"], spent, duration)


def _target(base: str, workload: str) -> tuple[str, dict[str, object]]:
    route = "embeddings" if workload == "embeddings" else "chat/completions"
    return f"{base}/v1/{route}", WORKLOADS[workload]


def run_together(versions: list[Version], *, duration: int, connections: int, workdir: str, workload: str) -> None:
    """Both versions under load at the same time, each from its own wrk: whatever else the
    machine does in those seconds, it does to both, so their CPU per request compares."""
    started = [version.start() for version in versions]
    try:
        targets = [_target(base, workload) for _, base in started]
        dirs = [Path(workdir, version.label) for version in versions]
        for folder in dirs:
            folder.mkdir(exist_ok=True)

        def load(index: int, seconds: int) -> dict[str, float]:
            url, body = targets[index]
            key = versions[index].key
            return wrk(url, body, key=key, duration=seconds, connections=connections, workdir=str(dirs[index]), cpu="")

        with ThreadPoolExecutor(len(versions)) as pool:
            list(pool.map(lambda index: load(index, 2), range(len(versions))))  # warm
            before = [group_cpu_seconds(server.pid) for server, _ in started]
            results = list(pool.map(lambda index: load(index, duration), range(len(versions))))
            spent = [group_cpu_seconds(server.pid) - b for (server, _), b in zip(started, before, strict=True)]
    finally:
        procs.stop([server for server, _ in started])
    for version, result, cpu in zip(versions, results, spent, strict=True):
        version.record(result["rps"], cpu, duration)


# Every per-key control and a hard budget on the org and on each key, none of them binding, so
# the gateway does all their work on every request (issue 13: throughput within 10 % with them on).
CONTROLS_ON = (
    "from apps.keys.models import ApiKey; from apps.plans.models import Budget; "
    "from apps.orgs.models import Organisation; org = Organisation.objects.get(slug='{org}'); "
    "keys = ApiKey.objects.filter(org=org); "
    "keys.update(allowed_models=['bench-chat', 'bench-embed', 'bench-stream'], allowed_ips=['127.0.0.0/8'], "
    "rpm_limit=10**8, tpm_limit=10**9); "
    "Budget.objects.create(org=org, monthly_usd=10**9, hard=True); "
    "[Budget.objects.create(org=org, api_key=key, monthly_usd=10**9, hard=True) for key in keys]"
)


def _shell(value: str) -> str:
    return CONTROLS_ON if value == "controls" else value


def pairs(values: list[str]) -> dict[str, str]:
    return dict(value.split("=", 1) for value in values)


@contextlib.contextmanager
def lab(prefix: str) -> Iterator[tuple[str, dict[str, str], str, str]]:
    """What two versions share, all on loopback and all stopped on the way out: a PostgreSQL with
    one database per version (``ab0``, ``ab1``), a Redis, and nginx's canned upstream.
    Yields ``(workdir, base_env, json_url, sse_url)``; :class:`Version` makes each version's env."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    postgres, redis = servers.start_postgresql(), servers.start_redis()
    if postgres is None or redis is None:
        sys.exit("PostgreSQL and redis-server binaries are needed")
    nginx_process = None
    try:
        with psycopg.connect(postgres.url, autocommit=True) as connection:
            for index in (0, 1):
                connection.execute(f"CREATE DATABASE ab{index}")
        base_env = bench_env(database_url=postgres.url, redis_url=redis.url, conn_max_age=60)
        nginx_port, sse_port = servers.free_port(), servers.free_port()
        Path(workdir, "nginx.conf").write_text(nginx_config(nginx_port, sse_port, workdir))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        nginx_process = subprocess.Popen([nginx, "-c", f"{workdir}/nginx.conf", "-g", "daemon off;"])
        wait_http(f"http://127.0.0.1:{nginx_port}/health")
        yield workdir, base_env, f"http://127.0.0.1:{nginx_port}", f"http://127.0.0.1:{sse_port}"
    finally:
        if nginx_process is not None:
            nginx_process.terminate()
            nginx_process.wait(timeout=15)
        postgres.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tree_a", type=Path)
    parser.add_argument("tree_b", type=Path)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--env-a", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--env-b", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--shell-a", default="", help="Python run by manage.py shell after A is seeded ({org})")
    parser.add_argument("--shell-b", default="", help="likewise for B; --shell-b controls: CONTROLS_ON")
    parser.add_argument("--labels", default="A,B")
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="chat")
    parser.add_argument(
        "--together", action="store_true", help="load both versions at once, each with its own wrk, in every round"
    )
    args = parser.parse_args()

    with lab("pendra-ab-") as (workdir, base_env, json_url, sse_url):
        label_a, label_b = args.labels.split(",")
        versions = [
            Version(label_a, args.tree_a, 0, base_env, pairs(args.env_a), _shell(args.shell_a)),
            Version(label_b, args.tree_b, 1, base_env, pairs(args.env_b), _shell(args.shell_b)),
        ]
        for version in versions:
            version.prepare(json_url, sse_url)
        load_before = os.getloadavg()[0]
        for _ in range(args.rounds):
            if args.together:
                run_together(
                    versions, duration=args.duration, connections=args.connections, workdir=workdir,
                    workload=args.workload,
                )  # fmt: skip
                continue
            for version in versions:
                version.run(
                    duration=args.duration, connections=args.connections, workdir=workdir, workload=args.workload
                )
        load_after = os.getloadavg()[0]

    a, b = versions
    print()
    mode = "simultaneous" if args.together else "alternating"
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores ({platform.machine()}), one uvicorn process, "
        f"{args.connections} connections, {args.workload}, {args.rounds} {mode} rounds of {args.duration} s, "
        f"load average {load_before:.1f} → {load_after:.1f}."
    )
    print()
    print("| version | requests/s (median) | runs | CPU per request (median) | runs |")
    print("|---|---:|---|---:|---|")
    for version in versions:
        print(
            f"| {version.label} | {statistics.median(version.rps):.0f} | "
            f"{', '.join(f'{value:.0f}' for value in version.rps)} | "
            f"{statistics.median(version.cpu_us):.0f} µs | {', '.join(f'{value:.0f}' for value in version.cpu_us)} |"
        )
    rps_change = statistics.median(b.rps) / statistics.median(a.rps) - 1
    cpu_change = statistics.median(b.cpu_us) / statistics.median(a.cpu_us) - 1
    print()
    print(f"{b.label} against {a.label}: throughput {rps_change:+.1%}, CPU per request {cpu_change:+.1%}")


if __name__ == "__main__":
    main()
