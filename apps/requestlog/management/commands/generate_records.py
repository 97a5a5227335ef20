"""``manage.py generate_records --count N``: realistic request history in bulk (apps/requestlog/synthetic.py).

For benchmarks (bench/records_bench.py) and for trying the console on a full database. The
organisations it makes are named ``synthetic-NNN`` and its workers ``synthetic-gpu-NN``
(created disabled, so the gateway never routes to them); running it again adds more history
to the same organisations.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.requestlog.synthetic import generate


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = "Write N realistic request records (and the usage of the successes) across synthetic organisations."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=_positive, required=True, help="request records to write")
        parser.add_argument("--orgs", type=_positive, default=100, help="organisations to spread them over (100)")
        parser.add_argument("--workers", type=_positive, default=8, help="synthetic workers the records name (8)")
        parser.add_argument("--days", type=_positive, default=35, help="history reaches this many days back (35)")
        parser.add_argument("--seed", type=int, default=1, help="random seed, for a repeatable data set (1)")
        parser.add_argument("--batch-size", type=_positive, default=5000, help="rows per write (5000)")

    def handle(self, *args: Any, **options: Any) -> None:
        # Checked here, not only by argparse: call_command passes keyword options around the parser.
        for name in ("count", "orgs", "workers", "days", "batch_size"):
            if int(options[name]) < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1.")
        if options["workers"] < 2:
            raise CommandError("--workers must be at least 2 (failovers name two workers).")
        started = time.monotonic()
        step = max(options["count"] // 10, options["batch_size"])
        reported = [0]

        def progress(written: int) -> None:
            if written - reported[0] >= step or written == options["count"]:
                reported[0] = written
                self.stdout.write(f"  {written:,} records, {time.monotonic() - started:.0f} s")

        written = generate(
            count=options["count"],
            orgs=options["orgs"],
            workers=options["workers"],
            days=options["days"],
            seed=options["seed"],
            batch_size=options["batch_size"],
            progress=progress,
        )
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {written:,} request records across {options['orgs']} organisations in {elapsed:.1f} s."
            )
        )
