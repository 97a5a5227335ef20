"""A ``/v1`` body is parsed and checked where it cannot stall the other requests of the process.

``json.loads`` holds the GIL for the whole parse, and a body of hundreds of thousands of
small messages takes seconds to parse on a small machine: in the event loop, or in a
thread (which takes the GIL from the loop just the same), every other request of the
process would wait that long. So:

- up to ``INLINE_BYTES``: parsed in place (well under a millisecond);
- up to ``PENDRA_PARSE_PROCESS_BYTES``: in a thread (the GIL is given back often enough);
- above it: in a helper process of this web process (spawned at the first such body and
  kept), which returns only the small :class:`~apps.gateway.validation.ValidRequest`.

A helper that dies (a body that exhausts its memory) is replaced, and the request is a
400: the body could not be read.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import django

from apps.gateway.validation import InvalidRequest, ValidRequest
from pendra_console.hot_settings import hot

INLINE_BYTES = 64 * 1024

Validator = Callable[[bytes, str], ValidRequest]


def _start_helper() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pendra_console.settings")
    django.setup()


class BodyParser:
    def __init__(self) -> None:
        self._helper: ProcessPoolExecutor | None = None

    async def parse(self, validate: Validator, body: bytes, content_type: str) -> ValidRequest:
        if len(body) <= INLINE_BYTES:
            return validate(body, content_type)
        if len(body) <= hot.PENDRA_PARSE_PROCESS_BYTES:
            return await asyncio.to_thread(validate, body, content_type)
        if self._helper is None:
            # spawn, not fork: this process has threads, and a forked lock held by one of them stays held.
            context = multiprocessing.get_context("spawn")
            self._helper = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_start_helper)
        try:
            return await asyncio.wrap_future(self._helper.submit(validate, body, content_type))
        except BrokenProcessPool:
            self.close()
            raise InvalidRequest("The request body could not be read.", None) from None

    def close(self) -> None:
        if self._helper is not None:
            self._helper.shutdown(wait=False, cancel_futures=True)
            self._helper = None
