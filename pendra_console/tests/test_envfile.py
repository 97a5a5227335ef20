"""The `.env` file: `make run` writes its development values once, every documented command reads them.

Each test runs the real commands in subprocesses, in a throwaway directory standing in for
a `make run` checkout, with none of the suite's own settings in the environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

CONFIG_VARIABLES = ("DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS")


def _run(args: list[str], *, checkout: Path, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PENDRA_") and k not in CONFIG_VARIABLES}
    env = {**clean, "PENDRA_ENV_FILE": str(checkout / ".env"), "PENDRA_VAR_DIR": str(checkout / "var"), **(extra or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _manage(*args: str, checkout: Path, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _run([str(settings.BASE_DIR / "manage.py"), *args], checkout=checkout, extra=extra)


def _write_development_values(checkout: Path) -> None:
    written = _run(["-m", "pendra_console.envfile"], checkout=checkout)
    assert written.returncode == 0, written.stderr


def test_seed_demo_as_documented_works_in_a_make_run_checkout(tmp_path: Path) -> None:
    _write_development_values(tmp_path)
    assert _manage("migrate", "--noinput", checkout=tmp_path).returncode == 0

    seeded = _manage("seed_demo", "--json", checkout=tmp_path)

    assert seeded.returncode == 0, seeded.stderr
    assert json.loads(seeded.stdout)["keys"]["owner"].startswith("pnd_")


def test_without_the_env_file_a_command_still_refuses_to_guess_a_secret_key(tmp_path: Path) -> None:
    result = _manage("check", checkout=tmp_path)

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_the_real_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    _write_development_values(tmp_path)

    shown = _manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(settings.DEBUG)",
        checkout=tmp_path,
        extra={"DEBUG": "0"},
    )

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "False"


def test_writing_the_development_values_again_changes_nothing_already_there(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PENDRA_LOG_LEVEL=WARNING\nDEBUG=0\n")
    _write_development_values(tmp_path)
    first = env_file.read_text()

    _write_development_values(tmp_path)

    assert env_file.read_text() == first
    assert first.startswith("PENDRA_LOG_LEVEL=WARNING\nDEBUG=0\nSECRET_KEY=")
    assert first.count("DEBUG=") == 1
