"""Settings read on every ``/v1`` request, at the cost of a plain attribute.

``django.conf.settings`` is a ``LazyObject``: each read runs its Python-level
``__getattribute__`` (about half a microsecond), and a ``/v1`` request read settings
about eighteen times. :data:`hot` answers the same values from its own ``__dict__``:
the first read of a name copies it from ``settings``, and any change Django announces
(``override_settings``, pytest-django's ``settings`` fixture: the ``setting_changed``
signal) forgets every copy, so the next read sees the new value. A snapshot taken once
at import would keep serving the old value to tests that override a setting.

Only for settings that are changed through Django (never by assigning to
``django.conf.settings`` directly, which announces nothing).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed


class HotSettings:
    """``hot.NAME`` is ``settings.NAME``, cached until Django announces a settings change."""

    def __getattr__(self, name: str) -> Any:  # only reached for a name not copied yet
        value = getattr(settings, name)
        self.__dict__[name] = value
        return value


hot = HotSettings()


def _forget(**kwargs: Any) -> None:
    # Every copy, not only kwargs["setting"]: some values derive from others (cheap to re-read).
    hot.__dict__.clear()


setting_changed.connect(_forget, dispatch_uid="pendra_console.hot_settings")
