"""Pendra Console settings: read once from the environment (12-factor), plus `.env` in development.

Every variable has a default that gives the embedded set-up (SQLite, local-memory
cache, Celery on the filesystem transport, all under ``var/``). Production sets
``DATABASE_URL``, ``REDIS_URL``, ``SECRET_KEY``, ``ALLOWED_HOSTS`` and ``DEBUG=0``.
A value that cannot be parsed stops the process at start-up instead of being guessed.

The settings come in three parts, read in this order:

- ``base``: Django itself (apps, middleware, database, security, accounts, the admin API, logging);
- ``broker``: Redis as cache and rate-limit store, Celery's broker and its defaults;
- ``pendra``: the product's own knobs (keys, gateway, workers, records, metrics, periodic tasks).
"""

from pendra_console.settings.base import *  # noqa: F403
from pendra_console.settings.broker import *  # noqa: F403
from pendra_console.settings.pendra import *  # noqa: F403
