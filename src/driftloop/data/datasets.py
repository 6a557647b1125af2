"""Content-addressed, immutable dataset snapshots with lineage.

A dataset version is the first 12 hex digits of the SHA-256 of the table's content (Arrow IPC stream of its
columns, names and types), so adding the same content again — from the same file or a copy — returns the same
version. The snapshot is written as Parquet under `<root>/datasets/` (temp file + rename) before the metadata
row points at it: a crash leaves at most an orphan temp file, never a row without data.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.config import Config
from driftloop.data.features import feature_specs, infer_task
from driftloop.data.io import normalise_frame, read_table
from driftloop.data.schema import TableSchema, check_table, infer_schema, too_few_rows, validate_against
from driftloop.errors import DataError, NotFoundError
from driftloop.stores.metadata import DatasetRecord, MetadataStore, utcnow

VERSION_CHARS = 12


def table_digest(table: pa.Table) -> str:
    """SHA-256 of the table's content: column names, types and values, not file bytes or metadata."""
    table = table.replace_schema_metadata(None)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.combine_chunks().to_batches(max_chunksize=1 << 16):
            writer.write_batch(batch)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def _write_atomic(table: pa.Table, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def add_frame(
    store: MetadataStore,
    datasets_dir: Path,
    frame: pd.DataFrame,
    *,
    source: str,
    parents: list[str] | None = None,
    note: str = "",
    max_categories: int = 50,
) -> tuple[DatasetRecord, bool]:
    """Validate and snapshot a table; returns (record, created). Identical content returns the old record."""
    problems = check_table(frame) + too_few_rows(frame)
    if problems:
        raise DataError(f"{source}: the data is not usable", problems=problems)
    table = _to_arrow(frame)
    digest = table_digest(table)
    existing = store.find_dataset_by_digest(digest)
    if existing is not None:
        return existing, False
    version = digest[:VERSION_CHARS]
    path = datasets_dir / f"{version}.parquet"
    _write_atomic(table, path)
    schema = infer_schema(frame, max_categories=max_categories)
    record = DatasetRecord(
        version=version,
        digest=digest,
        created_at=utcnow(),
        source=source,
        path=str(path.resolve()),
        n_rows=len(frame),
        n_columns=frame.shape[1],
        schema=schema.to_dict(),
        parents=list(parents or []),
        note=note,
    )
    stored = store.add_dataset(record)
    return stored, stored is record  # not `record` when a concurrent writer stored the same content first


def add_file(
    store: MetadataStore, datasets_dir: Path, path: Path, fmt: str = "auto", **kwargs: object
) -> tuple[DatasetRecord, bool]:
    frame = read_table(path, fmt)
    return add_frame(store, datasets_dir, frame, source=str(Path(path).resolve()), **kwargs)  # type: ignore[arg-type]


def admission_problems(
    frame: pd.DataFrame, cfg: Config, reference: TableSchema | None
) -> tuple[list[str], list[str]]:
    """(errors, warnings) that keep `frame` from becoming the version `train` uses next, each naming a column.

    The table's own problems and the checks `data validate` makes against `reference` (the latest version's
    schema; None for the first version or a deliberate new schema), plus what training would refuse: a
    missing or constant target, and config keys that name no column.
    """
    if reference is not None:
        errors, warnings = validate_against(frame, reference)  # includes check_table's problems
    else:
        errors, warnings = check_table(frame), []
    errors += too_few_rows(frame)
    target = cfg.data.target
    if target not in frame.columns:
        if reference is None or target not in reference:  # else validate_against named it already
            errors.append(f"column {target!r} (data.target): missing")
        return errors, warnings
    try:
        infer_task(frame[target])
        feature_specs(cfg, frame, infer_schema(frame, cfg.data.max_categories))
    except DataError as exc:
        errors.append(str(exc))
    return errors, warnings


def add_checked_file(
    store: MetadataStore,
    datasets_dir: Path,
    path: Path,
    cfg: Config,
    *,
    fmt: str,
    new_schema: bool,
    note: str,
) -> tuple[DatasetRecord, bool, list[str]]:
    """`driftloop data add`: read, admit (or raise DataError listing every problem), snapshot.

    Returns (record, created, warnings). Nothing is written unless every check passes.
    """
    frame = read_table(path, fmt)
    latest = None
    if not new_schema:
        try:
            latest = store.get_dataset("latest")
        except NotFoundError:
            latest = None  # the first version: nothing to compare with
    reference = dataset_schema(latest) if latest else None
    errors, warnings = admission_problems(frame, cfg, reference)
    if errors:
        hint = ""
        if latest is not None and reference is not None and set(reference.names) - set(frame.columns):
            hint = (
                f" (columns compared with the latest version {latest.version}; --new-schema drops that check)"
            )
        raise DataError(f"{path}: not stored{hint}", problems=errors)
    record, created = add_frame(
        store,
        datasets_dir,
        frame,
        source=str(Path(path).resolve()),
        note=note,
        max_categories=cfg.data.max_categories,
    )
    return record, created, warnings


def load_dataset(store: MetadataStore, version: str = "latest") -> tuple[pd.DataFrame, DatasetRecord]:
    record = store.get_dataset(version)
    path = Path(record.path)
    if not path.is_file():
        raise DataError(
            f"dataset {record.version}: its snapshot {path} is gone (was the store folder moved?)"
        )
    # Normalised as on reading a file: Arrow gives a bool column with gaps back as objects.
    return normalise_frame(pq.read_table(path).to_pandas()), record


def dataset_schema(record: DatasetRecord) -> TableSchema:
    return TableSchema.from_dict(record.schema)


def validate_file(
    store: MetadataStore, path: Path, against: str = "latest", fmt: str = "auto"
) -> tuple[list[str], list[str], DatasetRecord]:
    """(errors, warnings, reference record) for a file compared with a stored version's schema."""
    frame = read_table(path, fmt)
    record = store.get_dataset(against)
    errors, warnings = validate_against(frame, dataset_schema(record))
    return errors, warnings, record
