"""Finding and reading a batch input (a Parquet or CSV file, folder or glob) as a Dask DataFrame.

Partitions are sized in rows (`scale.partition_rows`), turned into the byte `blocksize` Dask splits by:
Parquet row groups are grouped by their uncompressed size, CSV files are cut at line boundaries. CSV is
read as text and numbers are parsed during validation, so one malformed value rejects one row instead of
failing a whole block on a dtype mismatch.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftloop.data.io import PARQUET_SUFFIXES, sniff_delimiter
from driftloop.errors import DataError

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
SNIFF_BYTES = 256 * 1024


@dataclass(frozen=True)
class BatchInput:
    files: tuple[Path, ...]
    format: str
    """`parquet` or `csv`."""

    @property
    def total_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def find_input(spec: str | Path) -> BatchInput:
    """The data files named by a file, a folder (searched recursively) or a glob; one format only."""
    text = str(spec)
    path = Path(text)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = [
            p
            for p in sorted(path.rglob("*"))
            if p.is_file()
            and p.suffix.lower() in PARQUET_SUFFIXES | CSV_SUFFIXES
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        ]
    elif glob.has_magic(text):
        files = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()]
    else:
        raise DataError(f"--input {text}: no such file or folder")
    if not files:
        raise DataError(f"--input {text}: no Parquet or CSV files found")
    kinds = {"parquet" if f.suffix.lower() in PARQUET_SUFFIXES else "csv" for f in files}
    if len(kinds) > 1:
        raise DataError(f"--input {text}: mixes Parquet and CSV files; score them separately")
    empty = [str(f) for f in files if f.stat().st_size == 0]
    if empty:
        raise DataError(f"--input {text}: empty file(s): {', '.join(empty[:5])}")
    return BatchInput(tuple(files), kinds.pop())


def read_input(batch: BatchInput, partition_rows: int) -> Any:
    """A Dask DataFrame over the files with partitions of about `partition_rows` rows."""
    import dask.dataframe as dd

    files = [str(f) for f in batch.files]
    try:
        if batch.format == "parquet":
            return dd.read_parquet(files, blocksize=partition_rows * _parquet_row_bytes(batch.files[0]))
        sep = sniff_delimiter(batch.files[0])
        return dd.read_csv(
            files,
            sep=sep,
            dtype=str,
            blocksize=max(partition_rows * _csv_row_bytes(batch.files[0]), 4096),
            sample=SNIFF_BYTES,
        )
    except DataError:
        raise
    except Exception as exc:  # pyarrow/pandas raise many types; the user needs the file and the cause
        raise DataError(f"cannot read the input as {batch.format}: {exc}") from None


def _parquet_row_bytes(file: Path) -> int:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(file).metadata
    except Exception as exc:
        raise DataError(f"{file}: not a readable Parquet file: {exc}") from None
    if meta.num_rows == 0:
        return 64
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return max(1, size // meta.num_rows)


def _csv_row_bytes(file: Path) -> int:
    with file.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    lines = head.count(b"\n")
    return max(1, len(head) // max(lines, 1))
