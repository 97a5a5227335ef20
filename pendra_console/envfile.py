"""The development ``.env`` file: read by the settings, written once by ``make run``.

``make run`` keeps its development values (``DEBUG=1``, a generated ``SECRET_KEY``) in
``.env`` at the checkout's root, so every other documented command in the same checkout
(``python manage.py seed_demo``, ``celery -A pendra_console worker``, ...) runs with
them too. The real environment always wins over the file (python-dotenv with
``override=False``), and ``PENDRA_ENV_FILE`` names another file or, empty, none at all:
the container image sets it empty, so production stays environment-only.

``python -m pendra_console.envfile`` adds the development values that the file lacks and
never changes a value that is already there.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from dotenv import dotenv_values, load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent


def env_file_path() -> Path | None:
    """The file to read: ``PENDRA_ENV_FILE`` if set (empty means none), else ``.env`` at the root."""
    raw = os.environ.get("PENDRA_ENV_FILE")
    if raw is None:
        return BASE_DIR / ".env"
    return Path(raw) if raw.strip() else None


def load_env_file() -> Path | None:
    """Put the file's values into ``os.environ`` where the environment has none; return the file read."""
    path = env_file_path()
    if path is None or not path.is_file():
        return None
    load_dotenv(path, override=False, interpolate=False)
    return path


def _development_values() -> dict[str, str]:
    # A key that an earlier `make run` generated into var/ keeps its sessions valid.
    legacy = Path(os.environ.get("PENDRA_VAR_DIR") or BASE_DIR / "var") / "secret_key"
    secret = legacy.read_text().strip() if legacy.is_file() else ""
    return {
        "DEBUG": "1",
        "SECRET_KEY": secret or secrets.token_urlsafe(50),
        # Sign-up, verification and password-reset emails as files in var/mail/ (PENDRA_EMAIL_FILE_PATH).
        "PENDRA_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
    }


def write_development_values(path: Path) -> list[str]:
    """Append the development values that ``path`` does not set yet; return their names."""
    present = dotenv_values(path, interpolate=False) if path.is_file() else {}
    missing = {name: value for name, value in _development_values().items() if name not in present}
    if not missing:
        return []
    existing = path.read_text() if path.is_file() else ""
    lines = [] if existing else ["# Development values written by `make run`; the real environment overrides them."]
    lines += [f"{name}={value}" for name, value in missing.items()]
    separator = "" if not existing or existing.endswith("\n") else "\n"
    path.write_text(existing + separator + "\n".join(lines) + "\n")
    path.chmod(0o600)
    return list(missing)


def main() -> int:
    path = env_file_path()
    if path is None:
        print("PENDRA_ENV_FILE is empty: no .env file is used", file=sys.stderr)
        return 0
    added = write_development_values(path)
    if added:
        print(f"{path}: wrote {', '.join(added)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
