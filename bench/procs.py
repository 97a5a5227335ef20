"""Process trees for the benchmarks: their CPU time, their memory, pinning them to a core (Linux /proc)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    return parents


def tree(roots: list[int]) -> list[int]:
    """``roots`` and every live descendant."""
    parents = _parents()
    found = [root for root in roots if root in parents]
    seen = set(found)
    for pid in found:  # grows while iterating: breadth first
        for child, parent in parents.items():
            if parent == pid and child not in seen:
                seen.add(child)
                found.append(child)
    return found


def children(pid: int) -> list[int]:
    return sorted(child for child, parent in _parents().items() if parent == pid)


def tree_cpu_seconds(roots: list[int]) -> float:
    """User + system CPU seconds of the trees under ``roots``, including their reaped children's."""
    total = 0
    for pid in tree(roots):
        fields = _stat(pid)
        if fields is not None:
            total += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return total / _CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return int(match[1]) * 1024 if match else 0


def postgres_postmaster(workdir: str) -> int:
    """The postmaster of a ``testing.servers`` PostgreSQL."""
    return int(Path(workdir, "data", "postmaster.pid").read_text().split()[0])


def pin_trees(roots: list[int], cpus: str) -> None:
    """Every thread of every process under ``roots`` to ``cpus``; processes they start later inherit it."""
    for pid in tree(roots):
        subprocess.run(["taskset", "-a", "-c", "-p", cpus, str(pid)], capture_output=True, check=False)


def check_post(url: str, body: dict[str, object], key: str) -> None:
    """One POST of ``body`` to ``url``; a non-2xx answer stops the benchmark with the answer shown."""
    request = urllib.request.Request(  # noqa: S310 (loopback only)
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{url} answered {exc.code}: {exc.read()[:500]!r}") from None


def profile_format(path: str) -> list[str]:
    """py-spy's format for ``path``: .json speedscope, .txt collapsed stacks (one line per stack), else SVG."""
    if path.endswith(".json"):
        return ["--format", "speedscope"]
    return ["--format", "raw"] if path.endswith(".txt") else []


def write_block(readme: Path, name: str, text: str, heading: str = "") -> None:
    """Replace the ``<!-- name:start -->`` ... ``<!-- name:end -->`` block of ``readme`` (appended when
    missing, under ``heading`` if given)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    content = readme.read_text() if readme.exists() else "# Benchmarks\n"
    block = f"{start}\n{text}\n{end}"
    if start in content:
        before, rest = content.split(start, 1)
        content = before + block + rest.split(end, 1)[1]
    else:
        content = content.rstrip() + "\n\n" + (f"{heading}\n\n" if heading else "") + block + "\n"
    readme.write_text(content)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop servers started with ``start_new_session=True``, last started first (a proxy before its
    upstream): SIGTERM to each group, SIGKILL to a group still there after 15 s."""
    for process in reversed(processes):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
