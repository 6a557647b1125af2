"""Which feedback labels a served model can be judged by (docs/contracts.md, "Feedback labels").

Regression: a finite number. Classification: a label of the same kind as the model's classes (integers,
booleans or text) and, for a binary model, one of its two classes. A multiclass model may hear of a class it
has never predicted (white wines of quality 9 for a model trained on red wines of 3 to 8): that label is
true, lowers the live metrics as it should, and is what a retrained model needs to learn the class. A
label of another kind ("cat" for wine qualities, 6.5 for an integer class) is a client mistake: 422.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from driftloop.stores.predlog import label_string

__all__ = ["LabelRule", "label_rule"]

LabelKind = Literal["number", "integer", "boolean", "text", "any"]
MAX_LABEL_CHARS = 200
_ARTICLE = {
    "integer": "an integer",
    "boolean": "a boolean",
    "text": "a text",
    "any": "a",
    "number": "a number",
}
#: Integers beyond this are no float: they would be logged as infinity.
_MAX_ABS = 1e308


@dataclass(frozen=True)
class LabelRule:
    kind: LabelKind
    classes: frozenset[str] = frozenset()
    """The served models' classes as logged (`label_string`); empty for regression."""
    closed: bool = False
    """Only `classes` are valid labels (binary models)."""

    def problem(self, label: Any) -> str | None:
        """None for a valid label, else the message for its 422 entry."""
        if self.kind == "number":
            return (
                None
                if _finite_number(label)
                else f"is required and must be a finite number, got {_shown(label)}"
            )
        if not _plain_label(label):
            return f"is required and must be a class label (string or number), got {_shown(label)}"
        key = label_string(label)
        if key in self.classes:
            return None
        if self.closed or not _of_kind(label, self.kind):
            known = sorted(self.classes, key=_class_order)
            listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
            which = (
                "one of the model's classes"
                if self.closed
                else f"{_ARTICLE[self.kind]} class label like the model's"
            )
            return f"must be {which} ({listed}), got {_shown(label)}"
        return None


def label_rule(regression: bool, classes: Iterable[Any]) -> LabelRule:
    """The rule for the served models: `classes` of every model served (a challenger may know a new one)."""
    if regression:
        return LabelRule("number")
    values = list(classes)
    keys = frozenset(label_string(c) for c in values)
    if values and all(type(c) is bool for c in values):
        kind: LabelKind = "boolean"
    elif values and all(_integral(c) for c in values):
        kind = "integer"
    elif values and all(isinstance(c, str) for c in values):
        kind = "text"
    else:
        kind = "any"
    return LabelRule(kind, keys, closed=len(keys) == 2)


def _finite_number(value: Any) -> bool:
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int and abs(value) <= _MAX_ABS


def _integral(value: Any) -> bool:
    if type(value) is bool:
        return False
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    return type(value) is int or (type(value) is float and value.is_integer())


def _plain_label(label: Any) -> bool:
    if isinstance(label, str):
        return 0 < len(label) <= MAX_LABEL_CHARS
    return type(label) is bool or _finite_number(label)


def _of_kind(label: Any, kind: LabelKind) -> bool:
    if kind == "integer":
        if isinstance(label, str):
            return label.strip().lstrip("-").isdigit()
        return _integral(label)
    if kind == "boolean":
        return type(label) is bool
    if kind == "text":
        return isinstance(label, str)
    return True


def _class_order(key: str) -> tuple[int, float, str]:
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def _shown(value: Any) -> str:
    """The value as the client wrote it (JSON), cut short."""
    try:
        return json.dumps(value)[:40]
    except (TypeError, ValueError):
        return type(value).__name__
