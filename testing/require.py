"""Tests that need PostgreSQL or Redis: skipped on a laptop without them, failed under CI."""

from __future__ import annotations

import os

import pytest


def require_service(available: bool, what: str) -> None:
    """Skip on a laptop without the binary; under CI=true its absence is a failure, never a skip."""
    if available:
        return
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI=true but {what} is not running: .ci/run installs it")
    pytest.skip(f"needs {what} (installed by .ci/run)")
