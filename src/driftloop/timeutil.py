"""Durations and times as users write them: `30s`, `5m`, `1h`, `2d`, or an ISO timestamp."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from driftloop.errors import UserError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match:
        raise UserError(f"{text!r} is not a duration: use a number and a unit, e.g. 30s, 5m, 1h, 2d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A duration means that long ago; otherwise an ISO time (UTC if it names no zone)."""
    if _DURATION.match(text):
        return (now or datetime.now(UTC)) - parse_duration(text)
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"--since {text!r}: give a duration (30m, 2h) or an ISO time (2026-01-31T12:00)"
        ) from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
