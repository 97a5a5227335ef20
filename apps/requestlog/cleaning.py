"""Making a record row storable whatever a client or a worker put in it.

A model name, a path or an error text can carry NUL, control characters or lone
surrogates (valid JSON escapes that no UTF-8 column holds), or be longer than its
column; a worker can report token counts no integer column holds. Every row is
cleaned where it is built, so the database never refuses it because of its values:

- text: lone surrogates and control characters become U+FFFD, then the text is cut
  to its column's length (support staff see that something odd was sent, and where);
- integers: a value outside the column's range (or not an integer) is not believed:
  ``NULL`` where the column allows it, else its default;
- floats: NaN and infinities likewise;
- decimals (the usage's cost): rounded to the column's places; one it cannot hold becomes its default;
- token counts are believed together or not at all: one unbelievable count makes the
  whole set unreported (billing never rests on half a worker's report);
- JSON (the worker trail): every string cleaned as text and cut to
  :data:`JSON_TEXT_LENGTH`, containers cut to :data:`JSON_ITEMS` items and
  :data:`JSON_DEPTH` levels, numbers JSON cannot carry exactly (NaN, beyond 2**53) dropped,
  anything else turned into text, so a row's JSON stays small and storable.

The common case costs no regular expression at all: ``str.isprintable()`` is true only for
text with no character of Unicode's "Other" or "Separator" categories (but the space), and
every character cleaning replaces (C0 and C1 controls, DEL: ``Cc``; lone surrogates: ``Cs``)
is one of those. Only text it refuses (a tab, a NUL, a zero-width joiner, a surrogate...)
pays for the search, which then decides exactly as before.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import models

# C0 and C1 controls (NUL included), DEL, and the surrogate range.
_SUSPECT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
REPLACEMENT = "\ufffd"

# The ranges PostgreSQL enforces (Django's positive fields add a CHECK >= 0).
_INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "PositiveSmallIntegerField": (0, 2**15 - 1),
    "PositiveIntegerField": (0, 2**31 - 1),
    "SmallIntegerField": (-(2**15), 2**15 - 1),
    "IntegerField": (-(2**31), 2**31 - 1),
    "PositiveBigIntegerField": (0, 2**63 - 1),
    "BigIntegerField": (-(2**63), 2**63 - 1),
}


def clean_text(value: str, max_length: int | None) -> str:
    if not value.isprintable() and _SUSPECT.search(value) is not None:
        # Re-pair surrogates a UTF-16 round trip can join, replace the lone ones, then the controls.
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        value = _CONTROLS.sub(REPLACEMENT, value)
    if max_length is not None and len(value) > max_length:
        value = value[:max_length]
    return value


JSON_TEXT_LENGTH = 300
JSON_ITEMS = 20
JSON_DEPTH = 3
_JSON_INT_LIMIT = 2**53


def clean_json(value: Any, depth: int = 0) -> Any:
    kind = type(value)  # the common kinds first: a trail is a list of dicts of strings
    if kind is str:
        return clean_text(value, JSON_TEXT_LENGTH)
    if kind is dict and depth < JSON_DEPTH:
        clean: dict[str, Any] = {}
        for key, item in itertools.islice(value.items(), JSON_ITEMS):
            # Plain short text (a trail's keys and values) is kept as it is without a call.
            if type(key) is not str or not (key.isprintable() and len(key) <= JSON_TEXT_LENGTH):
                key = clean_text(_text_of(key), JSON_TEXT_LENGTH)
            if type(item) is not str or not (item.isprintable() and len(item) <= JSON_TEXT_LENGTH):
                item = clean_json(item, depth + 1)
            clean[key] = item
        return clean
    if kind is list and depth < JSON_DEPTH:
        return [clean_json(item, depth + 1) for item in value[:JSON_ITEMS]]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_JSON_INT_LIMIT <= value <= _JSON_INT_LIMIT else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple | dict):
        if depth < JSON_DEPTH:  # a subclass of list or dict, or a tuple
            if isinstance(value, dict):
                return clean_json(dict(itertools.islice(value.items(), JSON_ITEMS)), depth)
            return clean_json(list(itertools.islice(value, JSON_ITEMS)), depth)
        return None  # nested deeper than any record needs
    return clean_text(_text_of(value), JSON_TEXT_LENGTH)


def _text_of(value: Any) -> str:
    if type(value) is str:
        return value
    try:
        return str(value)
    except Exception:  # an int too long to print, an object whose __str__ fails: name its type
        return f"<{type(value).__name__}>"


TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
MAX_TOKEN_COUNT = _INTEGER_RANGES["PositiveIntegerField"][1]


class RowCleaner:
    """Cleans the dict rows of one model: known columns only, each within what it can hold."""

    def __init__(self, model: type[models.Model], *, together: tuple[str, ...] = ()) -> None:
        self.together = together
        self.text: dict[str, tuple[int | None, bool]] = {}
        self.integers: dict[str, tuple[int, int, Any]] = {}
        self.floats: dict[str, Any] = {}
        self.json: dict[str, models.Field[Any, Any]] = {}
        self.decimals: dict[str, tuple[Decimal, Decimal, Any]] = {}  # name -> (exponent, bound, fallback)
        for field in model._meta.concrete_fields:
            if field.primary_key:
                continue
            default = None if field.null else field.get_default()
            internal = field.get_internal_type()
            if isinstance(field, models.CharField | models.TextField):
                self.text[field.attname] = (field.max_length, field.null)
            elif internal in _INTEGER_RANGES and not field.is_relation:
                low, high = _INTEGER_RANGES[internal]
                self.integers[field.attname] = (low, high, default if default is not None or field.null else low)
            elif isinstance(field, models.FloatField):
                self.floats[field.attname] = default if default is not None or field.null else 0.0
            elif isinstance(field, models.JSONField):
                self.json[field.attname] = field
            elif isinstance(field, models.DecimalField):
                exponent = Decimal(1).scaleb(-field.decimal_places)
                bound = Decimal(10) ** (field.max_digits - field.decimal_places)
                self.decimals[field.attname] = (exponent, bound, default)

    def __call__(self, row: Mapping[str, Any]) -> dict[str, Any]:
        clean = dict(row)
        for name, (max_length, nullable) in self.text.items():
            value = clean.get(name)
            if type(value) is str:
                if value.isprintable() and (max_length is None or len(value) <= max_length):
                    continue  # the common case: nothing to replace, within its column (no regex)
            elif value is None:
                if name in clean and not nullable:
                    clean[name] = ""
                continue
            else:
                value = str(value)
            clean[name] = clean_text(value, max_length)
        unbelieved = False
        for name, (low, high, fallback) in self.integers.items():
            value = clean.get(name)
            if value is None:
                continue
            if type(value) is not int or not low <= value <= high:
                clean[name] = fallback
                unbelieved = unbelieved or name in self.together
        if unbelieved:
            for name in self.together:
                clean[name] = self.integers[name][2]
        for name, fallback in self.floats.items():
            value = clean.get(name)
            if value is None:
                continue
            if not isinstance(value, int | float) or not math.isfinite(value):
                clean[name] = fallback
        for name, (exponent, bound, fallback) in self.decimals.items():
            value = clean.get(name)
            if value is None:
                continue
            try:
                value = Decimal(value).quantize(exponent)
            except (InvalidOperation, TypeError, ValueError):
                value = None
            clean[name] = value if value is not None and value.is_finite() and abs(value) < bound else fallback
        for name, json_field in self.json.items():
            value = clean.get(name)
            if value is None:
                if name in clean and not json_field.null:
                    clean[name] = json_field.get_default()
                continue
            clean[name] = clean_json(value)
        return clean
