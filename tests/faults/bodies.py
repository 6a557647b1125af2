"""Seeded hostile request bodies for /v1/predict and /v1/feedback: valid ones mixed with every kind of value
that once got a 500 or poisoned the prediction log (huge numbers, inf/nan literals, lone surrogates in keys
and values, 400-digit integers, booleans, nested junk, wrong types, large arrays, bad request ids)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["HUGE_INT", "fuzz_bodies", "to_json"]

HUGE_INT = 10**400
NUMERIC_POISON: list[Any] = [
    1e308, -1e308, 1e50, -1e50, 3.5e38, 1e39, 10**300, math.inf, -math.inf, math.nan,
    HUGE_INT, -HUGE_INT, True, False, "9.4", "\ud800", [], {}, {"a": [1, {"b": []}]}, None,
]  # fmt: skip
CATEGORICAL_POISON: list[Any] = [
    "\ud800", "a\udc00b", "\udfff", HUGE_INT, True, 1.5, math.nan, [], {"x": 1}, "x" * 5000, 1e308,
]  # fmt: skip
GOOD_CATEGORIES: list[Any] = ["red", "white", None, "rosé", "\U0001f377", 7]
BAD_IDS: list[Any] = ["\ud800", "r-\udc80", "", "x" * 201, 5, None, True, [], {"id": 1}, HUGE_INT]
BAD_LABELS: list[Any] = [math.nan, math.inf, HUGE_INT, True, None, [], {"a": 1}, "\ud800", "x" * 201]


def to_json(value: Any) -> bytes:
    """JSON text as Python's json writes it: lone surrogates as \\udXXX escapes, NaN and Infinity as
    literals, integers of any length; valid JSON apart from the NaN/Infinity literals many clients send."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode("ascii")


def fuzz_bodies(
    n: int, seed: int, records: list[dict[str, Any]], numeric: list[str], categorical: str
) -> Iterator[tuple[str, bytes]]:
    """`n` (path, body) pairs, deterministic for a seed. About a third of the predict bodies are valid."""
    rng = random.Random(seed)

    def record() -> dict[str, Any]:
        rec = dict(rng.choice(records))
        rec[categorical] = rng.choice(GOOD_CATEGORIES)
        return rec

    def poisoned() -> dict[str, Any]:
        rec = record()
        how = rng.random()
        if how < 0.45:
            rec[rng.choice(numeric)] = rng.choice(NUMERIC_POISON)
        elif how < 0.8:
            rec[categorical] = rng.choice(CATEGORICAL_POISON)
        elif how < 0.9:
            rec[rng.choice(["\ud800", "al\udc00cohol", "\ud83d"])] = rng.choice([1, "red", "\ud800"])
        else:
            rec["routing_key"] = rng.choice(["\udfff", HUGE_INT, True, [], "", 1.5])
        return rec

    def batch(size: int) -> list[dict[str, Any]]:
        rows = [record() for _ in range(size)]
        if rng.random() < 0.7:
            rows[rng.randrange(size)] = poisoned()
        return rows

    def columnar() -> dict[str, Any]:
        rows = [record() for _ in range(rng.randint(1, 5))]
        cols = [*numeric, categorical]
        data = [[r[c] for c in cols] for r in rows]
        if rng.random() < 0.7:
            data[0][rng.randrange(len(cols))] = rng.choice(NUMERIC_POISON + CATEGORICAL_POISON)
        return {"columns": cols, "data": data}

    def junk() -> Any:
        if rng.random() < 0.05:
            return [rng.random() for _ in range(20_000)]  # a large array of the wrong things
        return rng.choice(
            [
                None, 0, HUGE_INT, "\ud800", True, [], {}, [[[[]]]], {"records": "\udc00"},
                {"columns": ["\ud800"], "data": [[1]]}, {"records": [HUGE_INT] * 10}, [[1, 2]] * 100,
                {"": {"": {"": [None]}}}, [{"a": 1}] * 3,
            ]
        )  # fmt: skip

    predict: list[tuple[float, Callable[[], Any]]] = [
        (0.30, record),
        (0.30, poisoned),
        (0.15, lambda: batch(rng.randint(2, 8))),
        (0.05, lambda: {"records": batch(rng.randint(2, 8)), "routing_key": "u-1"}),
        (0.07, columnar),
        (0.125, junk),
        (0.005, lambda: batch(1000)),  # large arrays, within the body size limit
    ]

    def feedback_item() -> dict[str, Any]:
        item: dict[str, Any] = {"request_id": f"{rng.getrandbits(64):016x}", "label": rng.choice([5, 6, "7"])}
        if rng.random() < 0.6:
            key = rng.choice(["request_id", "label"])
            item[key] = rng.choice(BAD_IDS if key == "request_id" else BAD_LABELS)
        return item

    for _ in range(n):
        if rng.random() < 0.2:
            how = rng.random()
            if how < 0.6:
                body: Any = feedback_item()
            elif how < 0.9:
                body = {"feedback": [feedback_item() for _ in range(rng.randint(1, 5))]}
            else:
                body = junk()
            yield "/v1/feedback", to_json(body)
            continue
        make = rng.choices([m for _, m in predict], weights=[w for w, _ in predict])[0]
        raw = to_json(make())
        if rng.random() < 0.02:  # literals only a hand-written body has
            raw = raw.replace(b"1e+308", b"1e999", 1).replace(b"NaN", b"-Infinity", 1)
        elif rng.random() < 0.005:  # nesting deeper than either JSON parser goes
            depth = rng.choice([1100, 5000])
            raw = b'{"alcohol": ' + b"[" * depth + b"]" * depth + b"}"
        yield "/v1/predict", raw
