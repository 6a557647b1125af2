"""Reading tables from CSV (delimiter sniffed) or Parquet into pandas, with errors that name the file."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from driftloop.errors import DataError

PARQUET_SUFFIXES = {".parquet", ".pq", ".parq"}
DELIMITERS = ",;\t|"


def sniff_delimiter(path: Path, sample_bytes: int = 64 * 1024) -> str:
    """The delimiter of a CSV file, from its first lines (the wine files use ';')."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        sample = fh.read(sample_bytes)
    if not sample.strip():
        raise DataError(f"{path}: the file is empty")
    # Whole lines only: a line cut off at the sample's end would confuse the sniffer.
    sample = "\n".join(sample.splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        header = sample.splitlines()[0]
        return max(DELIMITERS, key=header.count) if any(d in header for d in DELIMITERS) else ","


def detect_format(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    return "parquet" if path.suffix.lower() in PARQUET_SUFFIXES else "csv"


def read_table(path: Path | str, fmt: str = "auto") -> pd.DataFrame:
    """Read a whole table. Raises DataError for a missing, empty or unreadable file."""
    path = Path(path)
    if path.is_dir():  # a folder of Parquet files, as Spark and Dask write them
        fmt = "parquet"
    elif not path.is_file():
        raise DataError(f"{path}: no such file")
    elif path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    kind = detect_format(path, fmt)
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep=sniff_delimiter(path))
    except DataError:
        raise
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as {kind}: {exc}") from None
    if frame.shape[1] == 0:
        raise DataError(f"{path}: no columns")
    if len(frame) == 0:
        raise DataError(f"{path}: a header but no data rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    dupes = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if dupes:
        raise DataError(f"{path}: duplicate column name(s): {', '.join(dupes)}")
    return frame
