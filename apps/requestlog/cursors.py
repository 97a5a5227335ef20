"""Opaque keyset cursors for the request log: a signed position (created_at, id), never an offset.

A list of a million rows is paged by "the rows older than this one", which an index answers
in the same time on page 1 and page 10,000; an OFFSET would read and discard every row before
the page. The position is signed so a client cannot hand-craft one (a tampered or truncated
cursor is refused as invalid input, never a server error); it names no org or filter, so a
cursor taken from one list only marks a place in time in another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core import signing

from pendra_console.api.exceptions import ValidationError

_SALT = "pendra.requestlog.cursor"
INVALID_CURSOR = "not a cursor from this list: start again from the first page."


@dataclass(frozen=True)
class Position:
    """The last row of a page: the next page holds the rows strictly after it in (created_at, id) descending."""

    created_at: datetime
    id: int


def encode(position: Position) -> str:
    return signing.dumps([position.created_at.isoformat(), position.id], salt=_SALT, compress=False)


def decode(cursor: str) -> Position:
    """The position a cursor marks; anything else is a ValidationError naming the ``cursor`` field."""
    try:
        created_at, record_id = signing.loads(cursor, salt=_SALT)
        moment = datetime.fromisoformat(created_at)
        if not isinstance(record_id, int) or isinstance(record_id, bool) or moment.tzinfo is None:
            raise ValueError(cursor)
    except (signing.BadSignature, ValueError, TypeError):
        raise ValidationError({"cursor": INVALID_CURSOR}) from None
    return Position(created_at=moment, id=record_id)
