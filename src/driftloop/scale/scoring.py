"""Batch scoring on a Dask cluster: validate, predict, write, and log every partition where it is read.

    summary = score_batch(stores, client, "data/*.parquet", Path("scored"), model="champion")

Each partition is one task (read, validate, predict, write), so a worker holds one partition at a time
and an input of any size streams through. The task receives only a `ScoreJob` (paths and names); the
model is loaded once per worker process from the model folder (or, when a remote worker cannot see that
folder, downloaded from the tracking store) and cached. Tree models predict through compiled trees, as the
server does (`driftloop.compiled`: LightGBM by lleaves, about 3x less CPU a row): the client compiles once
before the job starts (cached in the model folder, where the server finds it too), each worker loads the
cached build, and a model that does not compile is scored as it is (the summary's `compiled` says which).

The output folder appears complete or not at all: workers write into a hidden sibling folder that is
renamed at the end. The prediction-log files (source `batch`) are staged in a hidden folder of the log
and moved into their date partitions only when every partition has succeeded.

    OUTPUT/predictions/part-00000.parquet   input columns + request_id, prediction, proba_<class>, model_version
    OUTPUT/rejects/part-00000.parquet       input columns + _reject_reason, _partition, _row
    OUTPUT/summary.json
    OUTPUT/top.csv, top.xlsx                with `top=`: rank, id column, request_id, score, prediction
                                            (see `scale/ranking.py` for the ranking rule)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftloop.errors import DataError, NotFoundError, UserError
from driftloop.scale.inputs import find_input, read_input
from driftloop.scale.ranking import EXCEL_MAX_ROWS, TopK, score_column, top_rows, write_csv, write_xlsx
from driftloop.scale.validate import check_partition
from driftloop.stores.logfiles import HOUR_US, hour_folder
from driftloop.stores.models import ModelBundle, load_bundle_dir
from driftloop.stores.predlog import PredictionEntry, label_string, now_us

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from distributed import Client

    from driftloop.stores import Stores

SOURCE = "batch"
OUTPUT_COLUMNS = ("request_id", "prediction", "model_version")
REJECT_COLUMNS = ("_reject_reason", "_partition", "_row")
STATS_META = {"partition": "int64", "rows": "int64", "scored": "int64", "rejected": "int64", "seconds": "f8"}


@dataclass(frozen=True)
class ModelLocator:
    """How a worker finds a model version: the client's local folder, else the tracking store."""

    model_name: str
    version: str
    model_dir: str
    tracking_uri: str


@dataclass(frozen=True)
class ScoreJob:
    job_id: str
    model: ModelLocator
    arm: str
    out_dir: str
    """The hidden temporary output folder the workers write into."""
    log_staging: str | None
    """Hidden folder of the prediction log for this job's files; None: do not log."""
    log_series: str
    """`pred-<host>-<pid>-<start-ms>` of the client: one log file series per job, so a partition that Dask
    retries on another worker overwrites its own file instead of logging its rows twice."""
    compiled: bool = False
    """The client compiled the model's trees (cached in its folder): workers predict with the compiled build."""


@dataclass
class ScoreSummary:
    output: str
    model_name: str
    model_version: str
    input_files: int
    partitions: int
    rows: int
    scored: int
    rejected: int
    logged: int
    seconds: float
    job_id: str
    top_rows: int | None = None
    """Rows in OUTPUT/top.csv (and top.xlsx when they fit in one sheet); None: no ranked export."""
    top_by: str | None = None
    compiled: bool = False
    """Predicted through compiled trees (see the module docstring)."""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"rows_per_second": self.rows_per_second}


# -- client side ----------------------------------------------------------------------------------------


def resolve_model(stores: Stores, model: str) -> tuple[str, str]:
    """(version, arm): `champion`, `challenger` or a version number; the arm is its deployment role."""
    dep = stores.metadata.get_deployment(stores.model_name)
    if model in ("champion", "challenger"):
        version = getattr(dep, model)
        if version is None:
            raise NotFoundError(
                f"model {stores.model_name} has no {model} deployed; pass --model VERSION "
                f"(versions: {', '.join(v.version for v in stores.tracking.list_versions()) or 'none'})"
            )
        return str(version), model
    stores.tracking.get_version(model)  # raises NotFoundError naming the version
    # The log's `arm` names a deployment role; a version that has none is logged as its own traffic under
    # the champion arm, told apart by model_version.
    return model, "challenger" if model == dep.challenger else "champion"


def score_batch(
    stores: Stores,
    client: Client,
    input_spec: str | Path,
    output: Path,
    *,
    model: str = "champion",
    partition_rows: int | None = None,
    log_predictions: bool = True,
    compile_trees: bool = True,
    top: TopK | None = None,
    by: str | None = None,
    top_out: Path | None = None,
) -> ScoreSummary:
    """Score every row of the input on the cluster; see the module docstring for what is written where.

    `top` adds the ranked export by `by` (`proba:<class>` or `prediction`); `top_out`, a .csv or .xlsx
    file, gets a copy of it. Every option is checked before any partition is scored.
    `compile_trees`: predict through compiled trees when the model has any (False: as logged).
    """
    start = time.perf_counter()
    output = Path(output).resolve()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"--output {output} exists and is not an empty folder; choose a new one")
    if top is None and (by is not None or top_out is not None):
        raise UserError(f"{'--by' if by is not None else '--top-out'} needs --top (how many rows to export)")
    if top_out is not None and top_out.suffix.lower() not in (".csv", ".xlsx"):
        raise UserError(f"--top-out {top_out}: give a .csv or .xlsx file")
    batch = find_input(input_spec)
    version, arm = resolve_model(stores, model)
    model_dir = stores.tracking.model_dir(version)
    bundle = load_bundle_dir(model_dir)
    ddf = read_input(batch, partition_rows or stores.cfg.scale.partition_rows)
    missing = [n for n in bundle.spec.feature_names if n not in ddf.columns]
    if missing:
        raise DataError(
            f"--input {input_spec}: missing feature column(s) the model needs: {', '.join(missing)}"
        )
    clash = [c for c in (*OUTPUT_COLUMNS, *REJECT_COLUMNS, *_proba_names(bundle)) if c in ddf.columns]
    if clash:
        raise DataError(
            f"--input {input_spec}: column(s) {', '.join(clash)} would be overwritten by the scores"
        )
    rank_by = score_column(bundle.spec, by) if top is not None else None
    id_column = stores.cfg.data.id_column or bundle.spec.id_column
    if top is not None and id_column and id_column not in ddf.columns:
        raise DataError(f"--input {input_spec}: no id column {id_column!r} (data.id_column) for --top")

    compiled = compile_trees and _compile(bundle, model_dir) is not None
    job_id = uuid.uuid4().hex[:12]
    tmp = output.parent / f".{output.name}.tmp-{job_id}"
    staging = stores.log_dir.resolve() / "predictions" / f".batch-{job_id}" if log_predictions else None
    job = ScoreJob(
        job_id=job_id,
        model=ModelLocator(
            stores.model_name, version, str(model_dir.resolve()), stores.tracking.tracking_uri
        ),
        arm=arm,
        out_dir=str(tmp),
        log_staging=str(staging) if staging else None,
        log_series=f"pred-{_host()}-{os.getpid()}-{time.time_ns() // 1_000_000}",
        compiled=compiled,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        (tmp / "predictions").mkdir(parents=True)
        (tmp / "rejects").mkdir()
        try:
            stats = client.compute(ddf.map_partitions(score_partition, job, meta=STATS_META)).result()
        except (pd.errors.ParserError, UnicodeDecodeError, pa.ArrowInvalid) as exc:
            # A file that cannot be parsed at all (a CSV line with too many fields, a corrupt Parquet
            # page) has no rows to reject one by one: stop, name the cause, write nothing.
            raise DataError(f"--input {input_spec}: cannot read it: {exc}") from None
        best = None
        if top is not None and rank_by is not None:
            best = top_rows(tmp / "predictions", top, rank_by, id_column)
            if top_out is not None and top_out.suffix.lower() == ".xlsx" and len(best) > EXCEL_MAX_ROWS:
                raise UserError(f"--top-out {top_out}: {len(best):,} rows do not fit in an Excel sheet")
            write_csv(best, tmp / "top.csv")
            if len(best) <= EXCEL_MAX_ROWS:  # a larger percentage stays CSV only (the summary says)
                write_xlsx(best, tmp / "top.xlsx")
        logged = _commit_log(staging, stores.log_dir.resolve() / "predictions") if staging else 0
        summary = ScoreSummary(
            output=str(output),
            model_name=stores.model_name,
            model_version=version,
            input_files=len(batch.files),
            partitions=len(stats),
            rows=int(stats["rows"].sum()),
            scored=int(stats["scored"].sum()),
            rejected=int(stats["rejected"].sum()),
            logged=logged,
            seconds=time.perf_counter() - start,
            job_id=job_id,
            top_rows=None if best is None else len(best),
            top_by=rank_by,
            compiled=compiled,
        )
        (tmp / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
        if output.exists():
            output.rmdir()
        tmp.rename(output)
        if best is not None and top_out is not None:
            top_out.parent.mkdir(parents=True, exist_ok=True)
            (write_xlsx if top_out.suffix.lower() == ".xlsx" else write_csv)(best, top_out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return summary


def _commit_log(staging: Path, predictions_root: Path) -> int:
    """Move the staged log files into their hour partitions; returns the rows they hold."""
    rows = 0
    for file in sorted(staging.glob("date=*/hour=*/*.parquet")):
        target = predictions_root / file.parent.relative_to(staging)
        target.mkdir(parents=True, exist_ok=True)
        rows += pq.ParquetFile(file).metadata.num_rows
        os.replace(file, target / file.name)
    return rows


def _proba_names(bundle: ModelBundle) -> list[str]:
    return [f"proba_{label_string(c)}" for c in bundle.spec.classes]


# -- worker side ----------------------------------------------------------------------------------------

_BUNDLES: dict[tuple[str, str, str, str], ModelBundle] = {}
_BUNDLES_LOCK = threading.Lock()


def _compile(bundle: ModelBundle, folder: Path) -> ModelBundle | None:
    """`bundle` with compiled trees (built once per machine, cached in `folder`), or None: none compile, or
    compiling failed (said in the log; the job then scores the model as logged)."""
    from driftloop.compiled import compile_bundle

    try:
        return compile_bundle(bundle, folder)
    except Exception as exc:
        log.warning("scoring with the model as logged: compiling its trees failed: %s", exc)
        return None


def worker_bundle(loc: ModelLocator, compiled: bool = False) -> ModelBundle:
    """The model for this process, loaded on first use and kept (model versions never change); with
    `compiled`, its compiled trees (the client built them; a remote worker builds them in its own cache)."""
    key = (loc.tracking_uri, loc.model_name, loc.version, str(compiled))
    with _BUNDLES_LOCK:
        bundle = _BUNDLES.get(key)
        if bundle is None:
            folder = Path(loc.model_dir)
            if not (folder / "MLmodel").is_file():
                # A remote worker that does not share the client's disk fetches the version itself.
                from driftloop.stores.tracking import TrackingStore

                cache = Path(tempfile.gettempdir()) / "driftloop-models"
                folder = TrackingStore(loc.tracking_uri, "", loc.model_name, cache).model_dir(loc.version)
            bundle = load_bundle_dir(folder)
            if compiled:
                bundle = _compile(bundle, folder) or bundle
            _BUNDLES[key] = bundle
    return bundle


def score_partition(frame: pd.DataFrame, job: ScoreJob, partition_info: dict | None = None) -> pd.DataFrame:
    """Validate, score and write one partition; returns its counts as a one-row frame."""
    t0 = time.perf_counter()
    number = int(partition_info["number"]) if partition_info else 0
    bundle = worker_bundle(job.model, job.compiled)
    spec = bundle.spec
    frame = frame.reset_index(drop=True)
    checked = check_partition(frame, spec)
    ok = checked.ok
    name = f"part-{number:05d}.parquet"
    out_dir = Path(job.out_dir)
    rows_ok = np.flatnonzero(ok)
    if rows_ok.size:
        X = encode(bundle, checked.columns)
        cpu = time.thread_time()
        pred = bundle.predict_matrix(X)
        cpu_ms = (time.thread_time() - cpu) * 1000.0
        # "<job>-<partition>:<row>", joined by Arrow's kernel rather than a Python f-string per row.
        ids = pc.binary_join_element_wise(
            f"{job.job_id}-{number:05d}:", pc.cast(pa.array(rows_ok), pa.string()), ""
        )
        scored = frame.iloc[rows_ok].reset_index(drop=True)
        scored["request_id"] = pd.Series(ids, dtype=pd.ArrowDtype(pa.string()))
        scored["prediction"] = pd.Series(pred.labels).infer_objects()  # class labels keep their type
        if pred.proba is not None:
            for j, col in enumerate(_proba_names(bundle)):
                scored[col] = pred.proba[:, j]
        scored["model_version"] = job.model.version
        _write(scored, out_dir / "predictions" / name)
        if job.log_staging is not None:
            latency_ms = (time.perf_counter() - t0) * 1000
            _log(job, checked.columns, pred, ids, number, latency_ms=latency_ms, predict_cpu_ms=cpu_ms)
    if checked.n_rejected:
        bad = np.flatnonzero(~ok)
        rejects = frame.iloc[bad].reset_index(drop=True)
        rejects["_reject_reason"] = checked.reasons[bad]
        rejects["_partition"] = number
        rejects["_row"] = bad
        _write(rejects, out_dir / "rejects" / name)
    return pd.DataFrame(
        {
            "partition": [number],
            "rows": [len(frame)],
            "scored": [int(rows_ok.size)],
            "rejected": [checked.n_rejected],
            "seconds": [time.perf_counter() - t0],
        }
    ).astype(STATS_META)


def encode(bundle: ModelBundle, columns: dict[str, Any]) -> np.ndarray:
    """The Encoder's matrix for validated columns, with categories coded by pandas instead of per value.

    Validated categorical values are already str or None, so the code is the category's index in the
    spec, NaN for None or an unseen value: the same numbers as `Encoder.encode_frame`, about 10x faster.
    """
    spec = bundle.spec
    n = len(columns[spec.features[0].name])
    X = np.empty((n, len(spec.features)), dtype=np.float64)
    for j, feature in enumerate(spec.features):
        values = columns[feature.name]
        if feature.kind == "numeric":
            X[:, j] = values
        else:
            codes = pd.Categorical(values, categories=list(feature.categories)).codes.astype(np.float64)
            codes[codes < 0] = np.nan
            X[:, j] = codes
    return X


def _write(frame: pd.DataFrame, path: Path) -> None:
    # Mixed-type object columns (rejected rows of a loosely typed input) are written as text.
    # (infer_dtype scans in C: a column of strings, the usual case, is left alone.)
    for col in frame.columns:
        if frame[col].dtype == object and pd.api.types.infer_dtype(frame[col]) not in ("string", "empty"):
            frame[col] = frame[col].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, compression="snappy")


def _log(
    job: ScoreJob,
    columns: dict[str, Any],
    pred: Any,
    ids: pa.Array,
    number: int,
    latency_ms: float,
    predict_cpu_ms: float,
) -> None:
    """One prediction-log file for the partition, in the contract's layout, into the job's staging folder."""
    bundle = worker_bundle(job.model)
    spec = bundle.spec
    ts = now_us()
    entry = PredictionEntry(
        request_id=job.job_id,
        batch=True,
        ts_us=ts,
        model_name=job.model.model_name,
        model_version=job.model.version,
        arm=job.arm,
        source=SOURCE,
        feature_names=tuple(spec.feature_names),
        feature_kinds=tuple(f.kind for f in spec.features),
        columns=[columns[n] for n in spec.feature_names],
        labels=pred.labels,
        proba=pred.proba,
        classes=tuple(label_string(c) for c in spec.classes),
        latency_ms=latency_ms,
        predict_cpu_ms=predict_cpu_ms,
    )
    # Row i of the log is the same row as in the output file: same request id, stable under rejects.
    table = PredictionEntry.table([entry]).set_column(0, "request_id", ids)
    assert job.log_staging is not None, "score_chunk logs only when the job has a staging folder"
    folder = hour_folder(Path(job.log_staging), ts // HOUR_US)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{job.log_series}-{number:06d}.parquet"
    pq.write_table(table, folder / f".{name}.tmp", compression="zstd")
    os.replace(folder / f".{name}.tmp", folder / name)


def _host() -> str:
    return "".join(c if c.isalnum() or c in "._" else "_" for c in socket.gethostname()) or "host"
