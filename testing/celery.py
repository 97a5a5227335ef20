"""Real Celery processes for tests: a worker and beat as subprocesses, on the throwaway Redis.

Nothing runs eagerly: the test process sends tasks through the broker (or beat does), and a
separate ``celery worker`` process, using the test database, runs them, exactly as in
production. ``celery_stack`` gives each test its own queue (``PENDRA_CELERY_QUEUE``) so a
message left over by one test never reaches another test's worker, plus a mail directory for
Django's file-based email backend so tests can count the mails a worker sent.

    stack = celery_stack(PENDRA_HEALTH_INTERVAL="0.5")   # env for every process it starts
    worker = stack.worker()                              # started and ready
    stack.beat()
    task_id = stack.send("keys.rotate_due")
    worker.wait_for_task(task_id)
    worker.kill()                                        # SIGKILL, the whole process group

Every process a test started is stopped at teardown (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

REPO = Path(settings.BASE_DIR)
CELERY = [sys.executable, "-m", "celery", "-A", "pendra_console"]


def subprocess_database_url() -> str:
    """The URL of the database this test uses (pytest-django's test_ copy), for subprocesses."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class CeleryProcess:
    """One ``celery worker`` or ``celery beat`` subprocess in its own process group, logging to a file."""

    def __init__(self, kind: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.kind = kind
        self.args = args
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryProcess:
        with self.log_path.open("ab") as log:
            # A new session: kill() reaches the pool's children too, as a lost machine would.
            self.process = subprocess.Popen(
                [*CELERY, self.kind, *self.args],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, *, timeout: float = 30.0, after: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in the log past offset ``after``, waiting up to ``timeout`` s."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = compiled.search(self.log(), after)
            if match:
                return match
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"celery {self.kind} exited ({self.process.returncode}):\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"celery {self.kind}: no {pattern!r} within {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def wait_for_task(self, task_id: str, *, timeout: float = 30.0) -> str:
        """Wait until the worker finished ``task_id``; returns the log line (the task's result is in it)."""
        match = self.wait_for_log(
            rf"Task [\w.]+\[{re.escape(task_id)}\] (succeeded|raised|failed)[^\n]*", timeout=timeout
        )
        return match.group(0)

    def kill(self) -> None:
        """SIGKILL the worker and its pool: no warm shutdown, nothing acknowledged, transactions cut."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


class CeleryStack:
    """The test's Celery processes, queue and mail directory."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = env
        self.queue = env["PENDRA_CELERY_QUEUE"]
        self.mail_dir = Path(env["PENDRA_EMAIL_FILE_PATH"])
        self.processes: list[CeleryProcess] = []
        self._default_queue: str | None = None

    def take_tasks_sent_here(self) -> CeleryStack:
        """Tasks this test process queues without naming a queue (``delay``, after a commit) go to
        this stack's queue until teardown; Celery's router reads the default queue at each send."""
        from pendra_console.celery import app

        if self._default_queue is None:
            self._default_queue = app.conf.task_default_queue
        app.conf.task_default_queue = self.queue
        return self

    def worker(self, *, concurrency: int = 2, ready_timeout: float = 30.0) -> CeleryProcess:
        """A prefork worker (the production pool) on this test's queue, started and ready."""
        name = f"w{len(self.processes)}-{self.queue}@%h"
        process = CeleryProcess(
            "worker",
            [
                *("--loglevel", "INFO", "--concurrency", str(concurrency)),
                *("--hostname", name, "--queues", self.queue),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            self.env,
            self.tmp / f"worker-{len(self.processes)}.log",
        ).start()
        self.processes.append(process)
        process.wait_for_log(r"\bready\.", timeout=ready_timeout)
        return process

    def beat(self) -> CeleryProcess:
        index = len(self.processes)
        process = CeleryProcess(
            "beat",
            [
                *("--loglevel", "INFO", "--schedule", str(self.tmp / f"beat-{index}.schedule")),
                *("--pidfile", str(self.tmp / f"beat-{index}.pid")),
            ],
            self.env,
            self.tmp / f"beat-{index}.log",
        ).start()
        self.processes.append(process)
        process.wait_for_log(r"beat: Starting", timeout=30)
        return process

    def send(self, task_name: str, *args: Any) -> str:
        """Send a task by name through the broker to this test's queue; returns its id."""
        from pendra_console.celery import app

        return str(app.send_task(task_name, args=list(args), queue=self.queue).id)

    def mails(self) -> list[Message]:
        """Every message the file-based email backend wrote, oldest first."""
        messages: list[Message] = []
        if not self.mail_dir.exists():
            return messages
        separator = b"-" * 79
        for path in sorted(self.mail_dir.iterdir(), key=lambda p: p.stat().st_mtime_ns):
            for chunk in path.read_bytes().split(separator):
                if chunk.strip():
                    messages.append(message_from_bytes(chunk.strip()))
        return messages

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if self._default_queue is not None:
            from pendra_console.celery import app

            app.conf.task_default_queue = self._default_queue
            self._default_queue = None


@pytest.fixture
def celery_stack(transactional_db: None, redis_required: None, tmp_path: Path) -> Iterator[Any]:
    """``celery_stack(**env) -> CeleryStack``: env for the subprocesses (e.g. short intervals).

    The subprocesses see the test's rows, so tests using it commit (transactional_db).
    """
    stacks: list[CeleryStack] = []

    def make(**overrides: str) -> CeleryStack:
        queue = f"pendra-test-{uuid.uuid4().hex[:12]}"
        mail_dir = tmp_path / "mail"
        env = {
            **os.environ,
            "DATABASE_URL": subprocess_database_url(),
            "PENDRA_CELERY_QUEUE": queue,
            "PENDRA_LOG_LEVEL": "INFO",
            "PENDRA_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "PENDRA_EMAIL_FILE_PATH": str(mail_dir),
            "PYTHONUNBUFFERED": "1",
            **overrides,
        }
        stack = CeleryStack(tmp_path, env)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
