"""Throwaway PostgreSQL and Redis servers for the test session, from the installed binaries.

pytest-postgresql's executor cannot start PostgreSQL as root (initdb refuses), and CI
runs as root, so PostgreSQL is started here, as the ``postgres`` system user when we
are root. Both servers live in a temporary directory that is removed on exit.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


@dataclass
class Server:
    url: str
    stop_command: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    workdir: str = ""

    def stop(self) -> None:
        if self.stop_command:
            subprocess.run(self.stop_command, capture_output=True, timeout=60, check=False)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _as_postgres_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def start_postgresql() -> Server | None:
    initdb, pg_ctl = _find_binary("initdb"), _find_binary("pg_ctl")
    if not initdb or not pg_ctl:
        return None
    workdir = tempfile.mkdtemp(prefix="pendra-pg-")
    datadir, sockdir = Path(workdir, "data"), Path(workdir, "sock")
    sockdir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(sockdir, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres_user([initdb, "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    # Durability is pointless for a database that is deleted in minutes.
    options = (
        f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    subprocess.run(
        _as_postgres_user([pg_ctl, "-D", str(datadir), "-o", options, "-l", f"{workdir}/log", "-w", "start"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return Server(
        url=f"postgres://postgres@127.0.0.1:{port}/postgres",
        stop_command=_as_postgres_user([pg_ctl, "-D", str(datadir), "-m", "immediate", "stop"]),
        workdir=workdir,
    )


def start_redis() -> Server | None:
    redis_server = shutil.which("redis-server")
    if not redis_server:
        return None
    workdir = tempfile.mkdtemp(prefix="pendra-redis-")
    port = free_port()
    return Server(url=f"redis://127.0.0.1:{port}/0", process=start_redis_at(port, workdir), workdir=workdir)


def start_redis_at(port: int, workdir: str) -> subprocess.Popen[bytes]:
    """A Redis on a known port, answering PING (the cache-down tests stop and start their own)."""
    redis_server = shutil.which("redis-server") or "redis-server"
    process = subprocess.Popen(
        [
            redis_server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start within 30 s")


class StoppableRedis:
    """A Redis of a test's own on a fixed port, stopped and started again as the test says (outages)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="pendra-outage-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> StoppableRedis:
        self.process = start_redis_at(self.port, self.workdir)
        return self

    def stop(self) -> None:
        """Gone, as a crashed Redis is: connections refused, its data lost (no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class StoppablePostgres:
    """A PostgreSQL cluster of a test's own on a fixed port, stopped and started again (outages).

    :meth:`load` copies a database into it (``pg_dump | psql``), so a server process can be
    pointed at it with the rows a test made in the session's database.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="pendra-outage-pg-")
        self.datadir, self.sockdir = Path(self.workdir, "data"), Path(self.workdir, "sock")
        self.sockdir.mkdir()
        self.frozen = False
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
            shutil.chown(self.sockdir, "postgres")
        initdb = _find_binary("initdb")
        if initdb is None:
            raise RuntimeError("initdb is not installed")
        subprocess.run(
            _as_postgres_user(
                [initdb, "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        pg_ctl = _find_binary("pg_ctl") or "pg_ctl"
        subprocess.run(_as_postgres_user([pg_ctl, "-D", str(self.datadir), *args]), check=True, timeout=120)

    def start(self) -> StoppablePostgres:
        options = (
            f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg_ctl("-o", options, "-l", f"{self.workdir}/log", "-w", "start")
        return self

    def stop(self) -> None:
        """Down at once, as a crash or a failover looks to clients (committed data survives)."""
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def _postmaster_pid(self) -> int:
        return int(Path(self.datadir, "postmaster.pid").read_text().split()[0])

    def freeze(self) -> None:
        """Still accepting TCP connections (the kernel does) but answering nothing: a hung server."""
        os.kill(self._postmaster_pid(), signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen:
            os.kill(self._postmaster_pid(), signal.SIGCONT)
            self.frozen = False

    def load(self, source_url: str) -> None:
        """Copy the database at ``source_url`` (schema and rows) into this cluster's ``postgres`` database."""
        pg_dump, psql = _find_binary("pg_dump") or "pg_dump", _find_binary("psql") or "psql"
        dump = subprocess.run(
            [pg_dump, "--no-owner", "--no-privileges", "--dbname", source_url],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [psql, "--quiet", "--set", "ON_ERROR_STOP=1", "--dbname", self.url],
            input=dump.stdout,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def close(self) -> None:
        self.thaw()
        subprocess.run(
            _as_postgres_user([_find_binary("pg_ctl") or "pg_ctl", "-D", str(self.datadir), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(self.workdir, ignore_errors=True)
