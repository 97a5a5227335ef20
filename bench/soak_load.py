"""The soak's clients (``bench/soak.py``): a bounded random mix, and a tally of what was answered.

Chat (plain and streamed, some streams abandoned mid-way), embeddings, the admin API
(reads, one key rotated again and again), hostile bodies (invalid JSON, NUL and lone
surrogates, wrong types, deep nesting, an oversized body, unknown routes, bad keys), each
inference request with a random worker fault, while the simulators' latency flaps.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "a soak test prompt"}], "max_tokens": 8}
# Worker faults: one is picked per inference request (None: no fault).
FAULTS: list[dict[str, str] | None] = [
    None,
    None,
    None,
    {"x-sim-status": "500"},
    {"x-sim-garbage": "1"},
    {"x-sim-chunk-delay-ms": "20"},
    {"x-sim-reset-after": "3"},
    {"x-sim-prompt-tokens": str(2**70)},
    {"x-sim-status": "503", "x-sim-only": "sim-a"},
]
HOSTILE: list[tuple[str, bytes]] = [
    ("/v1/chat/completions", b'{"model": "sim-chat", "messages": '),
    ("/v1/chat/completions", b'{"model": "sim-chat\\u0000x", "messages": [{"role": "user", "content": "x"}]}'),
    ("/v1/chat/completions", b'{"model": "sim\\ud800chat", "messages": [{"role": "user", "content": "x"}]}'),
    ("/v1/chat/completions", b'{"model": "sim-chat", "messages": "not a list"}'),
    ("/v1/embeddings", b'{"model": "sim-embed", "input": {"nested": [1, 2, {"x": null}]}}'),
    ("/v1/chat%00/completions", b"{}"),
    ("/v1/no-such-route", b"{}"),
    ("/v1/chat/completions", b"[" * 200 + b"]" * 200),
    ("/api/v1/orgs/", b'{"name": "\\ud800", "slug": "' + b"x" * 300 + b'"}'),
]
ADMIN_READS = ["/api/v1/orgs/{org}/requests/", "/api/v1/orgs/{org}/usage/", "/api/v1/me", "/api/v1/orgs/"]


@dataclass
class Tally:
    answered: dict[str, tuple[str, int]] = field(default_factory=dict)  # request id -> (route, status)
    successes: set[str] = field(default_factory=set)  # billable: inference answered 200 and complete
    abandoned: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # client-side exceptions (no answer)

    def note(self, route: str, response: httpx.Response, *, success: bool = False) -> None:
        request_id = response.headers.get("x-request-id")
        self.statuses[response.status_code] += 1
        if request_id:
            self.answered[request_id] = (route, response.status_code)
            if success:
                self.successes.add(request_id)


class Load:
    def __init__(self, urls: list[str], key: str, org: str, rotating_key_id: int, sims: list[str]) -> None:
        self.urls = urls
        self.key = key
        self.org = org
        self.rotating_key_id = rotating_key_id
        self.sims = sims
        self.tally = Tally()
        self.rotations = 0
        self._rotation_lock = asyncio.Lock()

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **(extra or {})}

    async def one(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        roll = rng.random()
        fault = rng.choice(FAULTS)
        if roll < 0.35:
            response = await http.post("/v1/chat/completions", json=CHAT, headers=self._headers(fault))
            self.tally.note("/v1/chat/completions", response, success=response.status_code == 200)
        elif roll < 0.6:
            await self.stream(http, rng, fault)
        elif roll < 0.72:
            body = {"model": "sim-embed", "input": ["soak", "test"]}
            response = await http.post("/v1/embeddings", json=body, headers=self._headers(fault))
            self.tally.note("/v1/embeddings", response, success=response.status_code == 200)
        elif roll < 0.84:
            path = rng.choice(ADMIN_READS).format(org=self.org)
            response = await http.get(path, headers=self._headers())
            self.tally.note(path, response)
        elif roll < 0.87:
            await self.rotate(http)
        else:
            await self.hostile(http, rng)

    async def stream(self, http: httpx.AsyncClient, rng: random.Random, fault: dict[str, str] | None) -> None:
        body = {**CHAT, "stream": True, "max_tokens": 24}
        abandon = rng.random() < 0.2
        headers = self._headers({**(fault or {}), "x-sim-chunk-delay-ms": "5"})
        async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
            request_id = response.headers.get("x-request-id", "")
            if response.status_code != 200:
                await response.aread()
                self.tally.note("/v1/chat/completions", response)
                return
            text = b""
            async for chunk in response.aiter_bytes():
                text += chunk
                if abandon and text.count(b"data: ") >= 3:
                    break
            finished = b"data: [DONE]" in text
            broken = b"stream_broken" in text
        if abandon and not finished:
            # The client left: recorded as 499 and billed for what it got (if anything).
            self.tally.abandoned.add(request_id)
            self.tally.answered[request_id] = ("/v1/chat/completions", 499)
            self.tally.statuses[499] += 1
            return
        self.tally.note("/v1/chat/completions", response, success=finished and not broken)

    async def rotate(self, http: httpx.AsyncClient) -> None:
        async with self._rotation_lock:
            path = f"/api/v1/orgs/{self.org}/keys/{self.rotating_key_id}/rotate/"
            response = await http.post(path, json={"grace_seconds": 0}, headers=self._headers())
            self.tally.note(path, response)
            if response.status_code == 201:
                self.rotating_key_id = response.json()["id"]
                self.rotations += 1

    async def hostile(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        roll = rng.random()
        if roll < 0.15:
            response = await http.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer pk_nope"})
            self.tally.note("/v1/chat/completions", response)
            return
        if roll < 0.25:
            oversized = b'{"model": "sim-chat", "pad": "' + b"x" * (1536 * 1024) + b'"}'
            response = await http.post(
                "/v1/chat/completions", content=oversized, headers=self._headers({"content-type": "application/json"})
            )
            self.tally.note("/v1/chat/completions", response)
            return
        path, raw = rng.choice(HOSTILE)
        response = await http.post(path, content=raw, headers=self._headers({"content-type": "application/json"}))
        self.tally.note(path, response)

    async def client(self, index: int, deadline: float) -> None:
        rng = random.Random(index)
        async with httpx.AsyncClient(base_url=self.urls[index % len(self.urls)], timeout=120) as http:
            while time.monotonic() < deadline:
                try:
                    await self.one(http, rng)
                except httpx.HTTPError as exc:
                    self.tally.errors[f"{exc.__class__.__name__}: {exc}"[:120]] += 1

    async def flap(self, deadline: float) -> None:
        """The simulators' latency changes every two seconds, one of them at a time."""
        rng = random.Random(99)
        async with httpx.AsyncClient(timeout=5) as http:
            while time.monotonic() < deadline:
                sim = rng.choice(self.sims)
                await http.post(f"{sim}/_sim/faults", json={"latency_ms": rng.choice([0, 0, 5, 30, 120])})
                await asyncio.sleep(2)
            for sim in self.sims:
                await http.post(f"{sim}/_sim/faults", json={"latency_ms": 0})

    async def run(self, duration: float, concurrency: int) -> None:
        deadline = time.monotonic() + duration
        await asyncio.gather(self.flap(deadline), *(self.client(index, deadline) for index in range(concurrency)))
