"""The column kinds and the one coercion rule per kind that every door applies: file reading, training's
encoder, the JSON predict door and monitoring (docs/contracts.md, "Column kinds").

A value is coerced to its kind's canonical form or refused with a `ValueError` whose message says what was
expected; the caller adds the field, column or row. Standard library only: stores, data and serving all
import it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "BOOL_CATEGORIES",
    "KINDS",
    "Kind",
    "as_bool",
    "as_timestamp",
    "bool_key",
    "category_key",
    "is_bool_categories",
    "ISO_DATETIME",
]

Kind = Literal["numeric", "bool", "categorical", "datetime", "text"]
KINDS: tuple[Kind, ...] = ("numeric", "bool", "categorical", "datetime", "text")

#: A bool column's values as categories (and as logged): `str(True)`, `str(False)`, in code order.
BOOL_CATEGORIES = ("False", "True")
_TRUE = frozenset(("true", "1"))
_FALSE = frozenset(("false", "0"))
#: What a datetime value looks like, in a file's text column and in JSON alike: ISO 8601, date first.
ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?", re.ASCII
)


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (np.True_ -> True, np.int64(3) -> 3)."""
    item = getattr(value, "item", None)
    return item() if item is not None and type(value).__module__ == "numpy" else value


def as_bool(value: Any) -> bool:
    """bool: true/false, the strings "true"/"false" in any case, 1/0 and "1"/"0"; nothing else."""
    value = _plain(value)
    if type(value) is bool:
        return value
    if type(value) in (int, float) and value in (0, 1):
        return bool(value)
    if type(value) is str:
        token = value.strip().lower()
        if token in _TRUE:
            return True
        if token in _FALSE:
            return False
    raise ValueError(f'expected a boolean (true/false, "true"/"false", 1/0), got {_describe(value)}')


def bool_key(value: Any) -> str:
    """A bool value as its category string, "True" or "False"."""
    return BOOL_CATEGORIES[as_bool(value)]


def category_key(value: Any) -> str:
    """categorical: a string as it is; an integral number as its integer ("7" for 7 and 7.0), any other
    finite number as its shortest decimal form ("2.5"). Nothing else: a boolean belongs to a bool column,
    and taken as "True" here it would silently be an unseen category of a column of 0/1 codes."""
    value = _plain(value)
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return str(value)
    if kind is float and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    raise ValueError(f"expected a string (category), or a number, got {_describe(value)}")


def is_bool_categories(categories: Iterable[str]) -> bool:
    """A categorical feature whose training values are only "False"/"True" is a bool feature."""
    values = set(categories)
    return bool(values) and values <= set(BOOL_CATEGORIES)


def as_timestamp(value: Any) -> datetime:
    """datetime: an ISO 8601 date or date-time string ("2024-05-01", "2024-05-01T10:30:00+02:00"); without an
    offset it is UTC. The result is timezone-aware UTC. Numbers are refused: seconds or milliseconds since
    the epoch cannot be told apart."""
    if type(value) is str and ISO_DATETIME.fullmatch(value.strip()):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:  # the right shape, an impossible date: 2024-02-30
            pass
        else:
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    raise ValueError(f"expected an ISO 8601 date/time string, got {_describe(value)}")


def _describe(v: Any) -> str:
    kind = {bool: "boolean", str: "string", float: "number", int: "number", list: "list", dict: "object"}.get(
        type(v), type(v).__name__
    )
    if v is None:
        return "null"
    return f"{kind} {repr(v)[:40]}" if kind in ("boolean", "string", "number") else kind
