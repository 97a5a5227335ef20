"""Shared settings of the property-based fuzzers (``-m fuzz``).

``make test`` runs each fuzzer briefly, derandomised so the examples (and so the outcome)
are the same on every run; ``make fuzz`` runs them long and random:
``PENDRA_FUZZ_EXAMPLES`` examples per test and ``PENDRA_FUZZ_SECONDS`` at most per test.
"""

from __future__ import annotations

import os
import time

from hypothesis import HealthCheck, Phase, settings


def examples(brief: int) -> int:
    return int(os.environ.get("PENDRA_FUZZ_EXAMPLES") or brief)


def is_long_run() -> bool:
    return bool(os.environ.get("PENDRA_FUZZ_EXAMPLES"))


def fuzz_settings(brief: int) -> settings:
    return settings(
        max_examples=examples(brief),
        deadline=None,
        derandomize=not is_long_run(),
        database=None,
        # Fixtures (actors, the live server) are per test; each example resets what it changed.
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
        print_blob=True,
    )


class TimeBudget:
    """``PENDRA_FUZZ_SECONDS`` per test: once spent, the remaining examples do nothing."""

    def __init__(self) -> None:
        self.ends = time.monotonic() + float(os.environ.get("PENDRA_FUZZ_SECONDS") or 300)

    def spent(self) -> bool:
        return time.monotonic() > self.ends
