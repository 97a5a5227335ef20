"""App boundaries (DESIGN.md): the domain apps never import the gateway or the console.

The gateway and the console call the domain apps' services; the other way round would
tie the business rules to one surface.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.conf import settings

DOMAIN_APPS = ["orgs", "keys", "plans", "workers", "requestlog"]
SURFACES = ("apps.gateway", "apps.console")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("app", DOMAIN_APPS)
def test_a_domain_app_never_imports_the_gateway_or_the_console(app: str) -> None:
    app_dir = Path(settings.BASE_DIR, "apps", app)
    offenders = {
        f"{path.relative_to(settings.BASE_DIR)}: {name}"
        for path in app_dir.rglob("*.py")
        if "tests" not in path.parts
        for name in _imports(path)
        if name.startswith(SURFACES)
    }
    assert offenders == set()
