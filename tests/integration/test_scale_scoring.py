"""Batch scoring on a 2-worker LocalCluster: equal to in-process scoring, bad rows rejected with reasons,
predictions logged as batch traffic, and nothing written when the input is unusable."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from driftloop.errors import DataError, NotFoundError, UserError
from driftloop.scale.cluster import dask_client
from driftloop.scale.scoring import score_batch
from driftloop.stores.models import load_bundle_dir
from driftloop.stores.predlog import read_log
from tests.integration.scale_support import FEATURES, NOT_NULLABLE, ScaleProject, make_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, red: pd.DataFrame) -> Iterator[ScaleProject]:
    proj = make_project(tmp_path_factory.mktemp("scale"), red)
    yield proj
    proj.stores.close()


@pytest.fixture(scope="module")
def client() -> Iterator:
    # Real worker processes: the job and the model locator are pickled and the model loads on the worker.
    with dask_client(None, n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB") as c:
        yield c


def _read(folder: Path) -> pd.DataFrame:
    files = sorted(folder.glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()


def test_batch_scores_equal_in_process_scores_row_for_row(
    project: ScaleProject, client, red: pd.DataFrame, tmp_path: Path
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    data = red.assign(row_id=np.arange(len(red)))
    for i, start in enumerate(range(0, len(data), 600)):
        data.iloc[start : start + 600].to_parquet(src / f"chunk-{i}.parquet", row_group_size=200)

    summary = score_batch(project.stores, client, src, tmp_path / "out", partition_rows=250)

    assert summary.partitions > 3  # row groups grouped into several partitions per file
    # Predicted through the lleaves build of the booster, built once by the client into the model folder.
    model_dir = project.stores.tracking.model_dir(project.version)
    assert summary.compiled and list(model_dir.rglob(".*.lleaves*.o"))
    assert (summary.rows, summary.scored, summary.rejected) == (len(red), len(red), 0)
    out = _read(tmp_path / "out" / "predictions").sort_values("row_id", ignore_index=True)
    assert out["row_id"].tolist() == list(range(len(red)))
    bundle = load_bundle_dir(model_dir)
    expected = bundle.predict_frame(red)
    assert out["prediction"].tolist() == expected.labels.tolist()
    proba = out[[f"proba_{c}" for c in bundle.spec.classes]].to_numpy()
    np.testing.assert_allclose(proba, expected.proba, rtol=0, atol=1e-9)  # lleaves' check bound
    assert set(out["model_version"]) == {project.version}
    pd.testing.assert_frame_equal(out[red.columns.tolist()], red, check_dtype=True)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["scored"] == len(red)

    log = read_log(project.stores.log_dir, "predictions").to_pandas()
    mine = log[log["request_id"].isin(set(out["request_id"]))]
    assert len(mine) == len(red) == out["request_id"].nunique()
    assert set(mine["source"]) == {"batch"} and set(mine["arm"]) == {"champion"}
    logged = mine.set_index("request_id").loc[out["request_id"]]
    assert logged["prediction"].tolist() == [str(v) for v in expected.labels.tolist()]
    alcohol = [f["alcohol"] for f in logged["features"]]
    assert alcohol == red["alcohol"].tolist()
    assert not list(project.stores.log_dir.glob("predictions/.batch-*")), "staging folder left behind"


def test_bad_rows_go_to_the_rejects_file_with_their_reasons(
    project: ScaleProject, client, red: pd.DataFrame, tmp_path: Path
) -> None:
    data = red.head(300).astype({f: object for f in FEATURES}).assign(row_id=np.arange(300))
    data.loc[5, "pH"] = "acidic"  # wrong type
    data.loc[17, "density"] = float("inf")  # not finite
    data.loc[42, NOT_NULLABLE] = None  # null where the spec forbids it
    data.loc[99, "pH"] = "unknown"
    data.loc[99, NOT_NULLABLE] = None  # two problems in one row
    data.loc[150, "chlorides"] = None  # nullable feature: a valid row
    csv = tmp_path / "batch.csv"
    data.to_csv(csv, sep=";", index=False)

    summary = score_batch(project.stores, client, csv, tmp_path / "out", partition_rows=60)

    assert (summary.rows, summary.scored, summary.rejected) == (300, 296, 4)
    rejects = _read(tmp_path / "out" / "rejects")
    by_ph = dict(zip(rejects["pH"], rejects["_reject_reason"], strict=True))
    assert by_ph["acidic"] == "pH: expected a number, got 'acidic'"
    assert by_ph["unknown"] == (
        "pH: expected a number, got 'unknown'; alcohol: missing, and the model does not accept nulls"
    )
    reasons = sorted(rejects["_reject_reason"])
    assert "density: must be a finite number, got 'inf'" in reasons
    assert "alcohol: missing, and the model does not accept nulls" in reasons
    assert sorted(rejects["row_id"].astype(int)) == [5, 17, 42, 99]
    # _partition and _row locate each rejected row in the input as Dask split it.
    assert (rejects["_row"] < 60).all()
    scored = _read(tmp_path / "out" / "predictions").sort_values("row_id", key=lambda s: s.astype(int))
    assert len(scored) == 296
    # Valid rows, including one with a null in a nullable feature, score exactly as in process.
    bundle = load_bundle_dir(project.stores.tracking.model_dir(project.version))
    expected = bundle.predict_frame(red.head(300).drop(index=[5, 17, 42, 99]))
    assert scored["prediction"].astype(int).tolist() == expected.labels.tolist()


def test_unusable_input_fails_before_anything_is_written(
    project: ScaleProject, client, red: pd.DataFrame, tmp_path: Path
) -> None:
    src = tmp_path / "no_alcohol.parquet"
    red.drop(columns=["alcohol"]).to_parquet(src)
    with pytest.raises(DataError, match="missing feature column.*alcohol"):
        score_batch(project.stores, client, src, tmp_path / "out")
    with pytest.raises(NotFoundError, match="no version '99'"):
        score_batch(project.stores, client, src, tmp_path / "out", model="99")
    with pytest.raises(NotFoundError, match="no challenger"):
        score_batch(project.stores, client, src, tmp_path / "out", model="challenger")
    with pytest.raises(DataError, match="no Parquet or CSV files"):
        score_batch(project.stores, client, tmp_path / "*.nothing", tmp_path / "out")
    broken = tmp_path / "broken.csv"
    lines = red.head(20).to_csv(index=False).splitlines()
    lines[7] += ",1.0,2.0"  # a row with more fields than the header: no row to reject, the file is bad
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="Expected 12 fields in line 8"):
        score_batch(project.stores, client, broken, tmp_path / "out")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep me")
    with pytest.raises(UserError, match="not an empty folder"):
        score_batch(project.stores, client, src, tmp_path / "taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.csv", "no_alcohol.parquet", "taken"]


def test_score_command_in_process_and_exit_code_2(
    project: ScaleProject, red: pd.DataFrame, tmp_path: Path
) -> None:
    from driftloop.cli.scale import score

    app = typer.Typer()
    app.command()(score)
    app.command("noop")(lambda: None)  # a second command keeps `score` a named subcommand
    src = tmp_path / "small.csv"
    red.head(50).to_csv(src, index=False)
    runner = CliRunner()
    result = runner.invoke(
        app, ["score", "-i", str(src), "-o", str(tmp_path / "o"), "--no-log", "-c", str(project.config)]
    )
    assert result.exit_code == 0, result.output
    assert "scored 50 of 50 rows" in result.output
    assert len(_read(tmp_path / "o" / "predictions")) == 50
    bad = runner.invoke(
        app, ["score", "-i", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "p"), "-c", str(project.config)]
    )
    assert bad.exit_code == 2
    assert "no such file or folder" in bad.output


def test_batch_traffic_is_monitored_from_the_log_like_online_traffic(
    project: ScaleProject, client, red: pd.DataFrame, white: pd.DataFrame, tmp_path: Path
) -> None:
    from driftloop.monitor.drift import ColumnSpec, DriftDetector
    from driftloop.scale.drift import distributed_drift
    from driftloop.scale.windows import log_window
    from driftloop.stores.logfiles import LogChanged, read_retrying
    from driftloop.stores.logmaint import compact

    src = tmp_path / "white.parquet"
    white.to_parquet(src, row_group_size=1000)
    started = datetime.now(UTC)
    score_batch(project.stores, client, src, tmp_path / "out", partition_rows=1000)

    window = log_window(
        project.stores.log_dir, FEATURES, start=started, source="batch", model_version=project.version
    )
    specs = [ColumnSpec(f, "numeric") for f in FEATURES]
    result = distributed_drift(client, window, red, specs)

    exact = DriftDetector(specs).fit(red).evaluate(white)
    assert result.drift.n_current == len(white)
    assert [c.drift for c in result.drift.columns] == [c.drift for c in exact.columns]
    assert [c.method for c in result.drift.columns] == [c.method for c in exact.columns]

    # Compaction replaces the listed files and deletes them: the job's task says the log changed, and
    # listing again inside read_retrying reads the compacted file, every row once.
    def drift_of_window() -> Any:
        window = log_window(
            project.stores.log_dir, FEATURES, start=started, source="batch", model_version=project.version
        )
        return distributed_drift(client, window, red, specs)

    listed = log_window(
        project.stores.log_dir, FEATURES, start=started, source="batch", model_version=project.version
    )
    later = datetime.now(UTC) + timedelta(hours=2)  # the hour is closed
    for _ in range(2):  # the second run deletes what the first replaced
        compact(project.stores.log_dir, now=later, delete_after=timedelta(0))
    with pytest.raises(LogChanged, match="compacted or expired"):
        distributed_drift(client, listed, red, specs)
    again = read_retrying(drift_of_window)
    assert again.drift.n_current == len(white)
    # Same rows, summed in another order (one compacted file instead of five).
    assert [c.statistic for c in again.drift.columns] == pytest.approx(
        [c.statistic for c in result.drift.columns], rel=1e-9
    )


@pytest.mark.slow
def test_two_million_rows_on_two_worker_processes_every_row_scored_or_rejected_with_its_reason(
    project: ScaleProject, client, red: pd.DataFrame, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    n, files = 2_000_000, 4
    rng = np.random.default_rng(11)
    src = tmp_path / "in"
    src.mkdir()
    bad_alcohol = set(range(3, n, 10_000))  # null where the model forbids it
    bad_density = set(range(5_007, n, 25_000))  # infinite
    per_file = n // files
    for i in range(files):
        rows = np.arange(i * per_file, (i + 1) * per_file)
        part = red[FEATURES].iloc[rows % len(red)].reset_index(drop=True)
        part = part * rng.normal(1.0, 0.01, size=part.shape)  # not 1,250 copies of the same rows
        part["row_id"] = rows
        part.loc[part["row_id"].isin(bad_alcohol), NOT_NULLABLE] = np.nan
        part.loc[part["row_id"].isin(bad_density), "density"] = np.inf
        part.to_parquet(src / f"part-{i}.parquet", row_group_size=125_000)

    summary = score_batch(project.stores, client, src, tmp_path / "out", partition_rows=250_000)

    assert summary.rows == n and summary.scored + summary.rejected == n
    assert summary.rejected == len(bad_alcohol | bad_density)
    scored_files = sorted((tmp_path / "out" / "predictions").glob("*.parquet"))
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in scored_files) == summary.scored
    rejects = _read(tmp_path / "out" / "rejects")
    reasons = dict(zip(rejects["row_id"].astype(int), rejects["_reject_reason"], strict=True))
    assert set(reasons) == bad_alcohol | bad_density
    for row in bad_alcohol:
        assert "alcohol: missing, and the model does not accept nulls" in reasons[row]
    for row in bad_density:
        assert reasons[row].startswith("density: must be a finite number")


def test_local_workers_keep_glibcs_adaptive_malloc(client) -> None:
    # Dask's nanny would set MALLOC_TRIM_THRESHOLD_=65536 in each worker, which makes every large array a
    # fresh mmap (a forest ensemble scored 16-23 % slower); driftloop's local clusters leave it unset.
    environs = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset"))
    assert len(environs) == 2
    assert set(environs.values()) == {"unset"}
