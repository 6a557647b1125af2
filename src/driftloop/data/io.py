"""Reading tables from CSV (delimiter sniffed) or Parquet into pandas, with errors that name the file.

Whatever the format, a column comes out in one representation per kind (`normalise_frame`), so the same
data read from a CSV file and from a Parquet file is the same frame: numbers as int64 (float64 with
gaps), booleans as bool ("boolean" with gaps; text "true"/"False" too), dates as datetime64[us, UTC]
(ISO 8601 text too, naive values taken as UTC), pandas categories as their plain values.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from driftloop.errors import DataError
from driftloop.kinds import ISO_DATETIME

__all__ = ["detect_format", "normalise_column", "normalise_frame", "read_table", "sniff_delimiter"]

PARQUET_SUFFIXES = {".parquet", ".pq", ".parq"}
DELIMITERS = ",;\t|"
#: Every Parquet file starts with these bytes; the content, not the name, says what a file is.
PARQUET_MAGIC = b"PAR1"


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


def _is_parquet(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _file_kind(path: Path, fmt: str) -> str:
    """Parquet if the bytes say so (a config written for CSV data must still read a Parquet file); a file
    that the name or the format calls Parquet but is not one is an error, never read as one-column CSV."""
    if _is_parquet(path):
        return "parquet"
    if detect_format(path, fmt) == "parquet" or path.suffix.lower() in PARQUET_SUFFIXES:
        raise DataError(
            f"{path}: not a Parquet file (it does not start with Parquet's magic bytes {PARQUET_MAGIC!r}); "
            "if it is CSV text, name it .csv"
        )
    return "csv"


def _csv_header(path: Path, sep: str) -> list[str]:
    """The header line as written: pandas renames a repeated name to `a.1`, which would hide it."""
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        return [c.strip() for c in next(csv.reader(fh, delimiter=sep), [])]


def read_table(path: Path | str, fmt: str = "auto") -> pd.DataFrame:
    """Read a whole table. Raises DataError for a missing, empty or unreadable file."""
    path = Path(path)
    if path.is_dir():  # a folder of Parquet files, as Spark and Dask write them
        fmt = "parquet"
    elif not path.is_file():
        raise DataError(f"{path}: no such file")
    elif path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    kind = "parquet" if path.is_dir() else _file_kind(path, fmt)
    header: list[str] = []
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            sep = sniff_delimiter(path)
            header = _csv_header(path, sep)
            frame = pd.read_csv(path, sep=sep)
    except DataError:
        raise
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as {kind}: {exc}") from None
    if frame.shape[1] == 0:
        raise DataError(f"{path}: no columns")
    if len(frame) == 0:
        raise DataError(f"{path}: a header but no data rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    names = header if len(header) == frame.shape[1] else list(frame.columns)
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise DataError(f"{path}: duplicate column name(s): {', '.join(dupes)}")
    return normalise_frame(frame)


DATETIME_DTYPE = "datetime64[us, UTC]"
_BOOL_TEXT = {"true": True, "false": False}


def normalise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column in its kind's one representation (see the module docstring); values are unchanged."""
    out = {name: normalise_column(frame[name]) for name in frame.columns}
    return pd.DataFrame(out, index=frame.index) if out else frame


def normalise_column(series: pd.Series) -> pd.Series:
    dtype = series.dtype
    has_na = bool(series.isna().any())
    if isinstance(dtype, pd.CategoricalDtype):
        # The values, not the category set: unused categories are no data (and CSV has none).
        inner = dtype.categories.dtype
        if pd.api.types.is_bool_dtype(inner):
            return series.astype("boolean" if has_na else bool)
        if pd.api.types.is_numeric_dtype(inner):
            return normalise_column(series.astype(np.float64 if has_na else inner))
        return normalise_column(series.astype("str"))
    if pd.api.types.is_bool_dtype(dtype):
        return series if not has_na else series.astype("boolean")
    if pd.api.types.is_extension_array_dtype(dtype) and pd.api.types.is_numeric_dtype(dtype):
        # Int64 / Float64 (convert_dtypes, Parquet from pandas): what read_csv gives for the same numbers.
        if pd.api.types.is_integer_dtype(dtype) and not has_na:
            return series.astype(np.int64)
        return series.astype(np.float64)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        aware = series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
        return aware.astype(DATETIME_DTYPE)
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return _from_text(series, has_na)
    return series


def _from_text(series: pd.Series, has_na: bool) -> pd.Series:
    """Object and text columns: booleans (Python or "true"/"false" text) and ISO 8601 dates get their kind."""
    values = series.dropna()
    if values.empty:
        return series
    if pd.api.types.is_object_dtype(series.dtype):
        types = values.map(type)
        if types.isin((bool, np.bool_)).all():
            return series.astype("boolean" if has_na else bool)
        if not types.eq(str).all():
            return series  # mixed objects: left as they are for the checks that name them
    # A sample first: a long text column is scanned whole only if its first values fit a kind.
    sample = values.head(100).str.strip()
    if sample.str.lower().isin(list(_BOOL_TEXT)).all():
        lowered = values.str.strip().str.lower()
        if lowered.isin(list(_BOOL_TEXT)).all():
            flags = lowered.eq("true").reindex(series.index)  # the gaps come back as missing
            return flags.astype("boolean") if has_na else flags.astype(bool)
    elif sample.str.fullmatch(ISO_DATETIME.pattern).all():
        text = values.str.strip()
        if text.str.fullmatch(ISO_DATETIME.pattern).all():
            parsed = pd.to_datetime(series.str.strip(), format="ISO8601", utc=True, errors="coerce")
            if int(parsed.notna().sum()) == len(values):  # 2024-02-30 has the shape but is no date: text
                return parsed.astype(DATETIME_DTYPE)
    return series
