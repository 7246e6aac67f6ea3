"""Opaque ids. Checks use UUIDv7: time-ordered, so the id alone locates the month partition of a check."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid


def uuid7(at: dt.datetime | None = None) -> uuid.UUID:
    """RFC 9562 UUID version 7 (48-bit Unix milliseconds, then random bits)."""
    millis = int(at.timestamp() * 1000) if at is not None else time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 68) & 0x0FFF) << 64
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    return uuid.UUID(int=value)


def uuid7_time(value: uuid.UUID) -> dt.datetime:
    """The creation time embedded in a UUIDv7 (millisecond precision, UTC)."""
    millis = value.int >> 80
    return dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC)


def parse_uuid(value: str) -> uuid.UUID | None:
    """An id from a URL path; None for anything that is not a UUID (answered as 404, like a missing id)."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None
