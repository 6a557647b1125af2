"""The kept holdout: which rows every model is scored on, chosen by a digest of each row's content.

A row is held out when the hash of its values (features and target) falls below `holdout_fraction`. The
decision depends on the row alone, not on its position or the rest of the table, so a grown dataset (the
old rows plus production rows) holds out exactly the old holdout rows plus its share of the new ones: no
later model ever trains on a row an earlier model was scored on, and the gate compares every model on the
same rows. Duplicate rows share a digest and so land on the same side, which keeps copies of a holdout
row out of training.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Salt of the row hash; changing it would move every holdout, so it is part of the format.
_SALT = b"driftloop-holdout-v1"
_SCALE = float(1 << 64)


def _canonical(value: object) -> str:
    """One spelling per value whatever the column's dtype: 5, 5.0 and "5" hash alike; missing is empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(float(int(value))) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return repr(float(value)) if abs(int(value)) < 10**15 else str(int(value))
    if isinstance(value, (np.floating,)):
        return _canonical(float(value))
    try:
        if pd.isna(value):  # type: ignore[call-overload]
            return ""
    except (TypeError, ValueError):
        pass
    text = str(value)
    try:
        return _canonical(float(text))
    except ValueError:
        return text


def row_digests(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """A uint64 digest per row of `frame[columns]` (columns hashed in sorted name order)."""
    ordered = sorted(columns)
    values = [frame[c].tolist() for c in ordered]
    out = np.empty(len(frame), dtype=np.uint64)
    for i, row in enumerate(zip(*values, strict=True)):
        text = "\x1f".join(f"{name}={_canonical(v)}" for name, v in zip(ordered, row, strict=True))
        digest = hashlib.blake2b(text.encode(), digest_size=8, key=_SALT).digest()
        out[i] = int.from_bytes(digest, "big")
    return out


def holdout_mask(frame: pd.DataFrame, columns: Sequence[str], fraction: float) -> np.ndarray:
    """True for rows held out of training: digest / 2**64 < fraction."""
    return held_out(row_digests(frame, columns), fraction)


def held_out(digests: np.ndarray, fraction: float) -> np.ndarray:
    """`holdout_mask` from digests already computed (they also group the CV folds)."""
    return digests.astype(np.float64) / _SCALE < fraction
