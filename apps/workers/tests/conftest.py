"""API clients for the workers' tests, built on the shared actors (testing/actors.py), keys included."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient


@pytest.fixture
def staff_client(request: pytest.FixtureRequest) -> Callable[[str], APIClient]:
    """``staff_client(kind)``: the named actor's key-authenticated client, or ``anonymous``."""

    def make(kind: str) -> APIClient:
        if kind == "anonymous":
            return APIClient()
        return request.getfixturevalue(kind).client()

    return make


@pytest.fixture
def operator_api(operator) -> APIClient:
    return operator.client()
