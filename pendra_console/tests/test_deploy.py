"""Production configuration: Django's deployment checks pass with production variables."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from django.conf import settings

PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "console.pendra.example",
    "DATABASE_URL": "postgres://pendra@db.internal:5432/pendra",
    "REDIS_URL": "redis://cache.internal:6379/0",
}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PENDRA_", "DATABASE_URL", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), *args],
        env={**clean, "PENDRA_ENV_FILE": "", "PENDRA_VAR_DIR": settings.VAR_DIR.as_posix(), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_with_production_variables() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_a_missing_secret_key_with_debug_off_stops_the_process() -> None:
    result = _manage("check", env={**PRODUCTION, "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_a_malformed_setting_stops_the_process_instead_of_being_guessed() -> None:
    result = _manage("check", env={**PRODUCTION, "PENDRA_CHAT_IDLE_TIMEOUT": "soon"})
    assert result.returncode != 0
    assert "PENDRA_CHAT_IDLE_TIMEOUT='soon' is not a number" in result.stderr


def test_two_ways_of_naming_the_key_pepper_at_once_stop_the_process() -> None:
    result = _manage("check", env={**PRODUCTION, "PENDRA_KEY_PEPPERS": "new,old", "PENDRA_KEY_PEPPER": "old"})
    assert result.returncode != 0
    assert "Set PENDRA_KEY_PEPPERS or PENDRA_KEY_PEPPER, not both" in result.stderr


def test_a_pepper_listed_twice_stops_the_process() -> None:
    result = _manage("check", env={**PRODUCTION, "PENDRA_KEY_PEPPERS": "new,new"})
    assert result.returncode != 0
    assert "PENDRA_KEY_PEPPERS lists a pepper twice" in result.stderr


def test_a_worker_ca_file_that_cannot_be_read_stops_the_process(tmp_path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    for path in (str(tmp_path / "missing.pem"), str(not_pem)):
        result = _manage("check", env={**PRODUCTION, "PENDRA_WORKER_CA_FILE": path})
        assert result.returncode != 0
        assert f"PENDRA_WORKER_CA_FILE={path!r} holds no usable PEM certificates" in result.stderr
