"""Ranked exports of a batch score for business users: the top N rows or top P% by one score column.

    top = parse_top("10%")                        # or "1000"; a UserError naming --top otherwise
    by = score_column(bundle.spec, "proba:7")     # the column of the predictions to rank by
    frame = top_rows(predictions_dir, top, by, id_column="customer_id")
    write_csv(frame, path); write_xlsx(frame, path)

The default ranking score (`--by` not given) is one rule: a binary model ranks by the probability of its
positive class, the last of its sorted classes (scikit-learn's convention: 1 of 0/1, True of False, "yes"
of "no"); a regression ranks by the prediction; a multiclass model has no natural choice, so `--by` is
required. Ties keep the order of the input (a stable sort).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from driftloop.errors import UserError
from driftloop.stores.models import ModelSpec
from driftloop.stores.predlog import label_string

__all__ = ["EXCEL_MAX_ROWS", "TopK", "parse_top", "score_column", "top_rows", "write_csv", "write_xlsx"]

#: One sheet holds 1,048,576 rows, the header included.
EXCEL_MAX_ROWS = 1_048_575


@dataclass(frozen=True)
class TopK:
    """How many rows to export: a count, or a percentage of the scored rows (rounded up)."""

    count: int | None = None
    percent: float | None = None

    def rows(self, n: int) -> int:
        if self.percent is not None:
            return min(n, math.ceil(self.percent / 100 * n))
        assert self.count is not None, "a TopK has a count or a percent"
        return min(n, self.count)

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


def parse_top(text: str) -> TopK:
    """`1000` (rows) or `10%` (of the scored rows, 0 < P <= 100)."""
    value = text.strip()
    hint = f"--top {text!r}: give a number of rows (1000) or a percentage of the scored rows (10%)"
    try:
        if value.endswith("%"):
            percent = float(value[:-1])
            if not 0 < percent <= 100:  # NaN fails this too
                raise UserError(f"{hint}; a percentage must be above 0 and at most 100")
            return TopK(percent=percent)
        count = int(value)
    except ValueError:
        raise UserError(hint) from None
    if count < 1:
        raise UserError(f"{hint}; the number of rows must be at least 1")
    if count > EXCEL_MAX_ROWS:
        raise UserError(f"{hint}; an Excel sheet holds at most {EXCEL_MAX_ROWS:,} rows")
    return TopK(count=count)


def score_column(spec: ModelSpec, by: str | None) -> str:
    """The predictions column to rank by, from `--by proba:<class>` or `prediction` (default: module doc)."""
    classes = [label_string(c) for c in spec.classes]
    choices = ", ".join([*(f"proba:{c}" for c in classes), "prediction"] if classes else ["prediction"])
    if by is None:
        if not classes:
            return "prediction"
        if len(classes) == 2:
            return f"proba_{classes[-1]}"
        raise UserError(f"--top on a multiclass model needs --by, one of: {choices}")
    if by == "prediction":
        if classes:  # a class label is no score: ranking by it would sort labels as text
            raise UserError(f"--by prediction: this model predicts classes; rank by one of: {choices}")
        return "prediction"
    kind, _, name = by.partition(":")
    if kind != "proba" or name not in classes:
        raise UserError(f"--by {by!r}: not a score of this model; one of: {choices}")
    return f"proba_{name}"


def top_rows(predictions: Path, top: TopK, by: str, id_column: str | None) -> pd.DataFrame:
    """The top rows of the scored Parquet files, best first: rank, id, request id, score, prediction."""
    columns = list(dict.fromkeys(c for c in (id_column, "request_id", by, "prediction") if c))
    files = sorted(predictions.glob("*.parquet"))  # part numbers follow the input order
    frames = [pq.read_table(f, columns=columns).to_pandas() for f in files]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    k = top.rows(len(frame))
    best = frame.sort_values(by, ascending=False, kind="stable").head(k).reset_index(drop=True)
    best.insert(0, "rank", range(1, len(best) + 1))
    return best


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    _atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_xlsx(frame: pd.DataFrame, path: Path) -> None:
    """One sheet `top`, header in the first row; written in openpyxl's streaming mode."""
    from openpyxl import Workbook

    def write(tmp: Path) -> None:
        book = Workbook(write_only=True)
        sheet = book.create_sheet("top")
        sheet.append(list(frame.columns))
        for row in frame.itertuples(index=False):
            sheet.append([None if pd.isna(v) else v.item() if hasattr(v, "item") else v for v in row])
        book.save(tmp)

    _atomic(path, write)


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    # A reader (or the business unit's share) never sees half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
