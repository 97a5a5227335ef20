"""The live gateway with two simulated workers, shared with the gateway's own tests."""

from apps.gateway.tests.conftest import gateway  # noqa: F401 (a fixture, used by name)
