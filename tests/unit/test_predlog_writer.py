"""The prediction log writer: contract schema, file naming, temp + rename, bounded queue, DuckDB readable."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftloop.stores.predlog import (
    FeedbackEntry,
    LogWriter,
    PredictionEntry,
    count_rows,
    log_files,
    read_log,
)

TS = 1_795_400_000_000_000  # 2026-11-23 02:13 UTC in microseconds


def entry(
    rid: str, n: int, *, batch: bool = True, arm: str = "champion", version: str = "1", ts: int = TS
) -> PredictionEntry:
    proba = np.tile([[0.25, 0.75]], (n, 1))
    return PredictionEntry(
        request_id=rid,
        batch=batch,
        ts_us=ts,
        model_name="wine",
        model_version=version,
        arm=arm,
        source="online",
        feature_names=("alcohol", "city"),
        feature_kinds=("numeric", "categorical"),
        columns=[np.array([9.5] * (n - 1) + [np.nan]), ["rome"] * (n - 1) + [None]],
        labels=[7] * n,
        proba=proba,
        classes=("5", "7"),
        latency_ms=1.25,
    )


def test_rows_follow_the_contract(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path, "predictions", flush_seconds=60, flush_rows=10_000).start()
    writer.put(entry("a", 1, batch=False))
    writer.put(entry("b", 3))
    writer.put(entry("c", 2, arm="shadow", version="2"))
    writer.close()
    files = log_files(tmp_path, "predictions")
    assert len(files) == 1
    assert re.fullmatch(r"pred-[\w.]+-\d+-\d{13}-\d+-000001\.parquet", files[0].name)
    assert files[0].parent.relative_to(tmp_path).as_posix() == "predictions/date=2026-11-23/hour=02"
    table = pq.read_table(files[0])
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("features").type == pa.struct(
        [("alcohol", pa.float64()), ("city", pa.string())]
    )
    assert table.schema.field("prediction").type == pa.string()
    rows = table.to_pylist()
    assert [r["request_id"] for r in rows] == ["a", "b:0", "b:1", "b:2", "c:0", "c:1"]
    assert [r["arm"] for r in rows] == ["champion"] * 4 + ["shadow"] * 2
    assert rows[0]["features"] == {"alcohol": None, "city": None}  # the single row is the null one
    assert rows[1]["features"] == {"alcohol": 9.5, "city": "rome"}
    assert rows[1]["prediction"] == "7" and json.loads(rows[1]["probabilities"]) == {"5": 0.25, "7": 0.75}
    assert rows[1]["latency_ms"] == 1.25 and rows[1]["source"] == "online"
    # What the monitoring side does: DuckDB over the glob.
    assert count_rows(tmp_path, "predictions", where="arm <> 'shadow'") == 4
    assert read_log(tmp_path, "predictions").num_rows == 6


def test_flushes_by_rows_and_time_and_writes_no_partial_files(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path, "predictions", flush_seconds=0.05, flush_rows=5).start()
    for i in range(20):
        writer.put(entry(f"r{i}", 1, batch=False))
    deadline = 200
    while writer.rows_written < 20 and deadline:
        import time

        time.sleep(0.01)
        deadline -= 1
    assert writer.rows_written == 20  # flushed by the thread, before close
    writer.close()
    assert not list(tmp_path.rglob(".*.tmp"))
    assert count_rows(tmp_path, "predictions") == 20
    names = [p.name for p in log_files(tmp_path, "predictions")]
    assert len(set(names)) == len(names) and all(".tmp" not in n for n in names)


def test_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    dropped: list[int] = []
    writer = LogWriter(
        tmp_path, "predictions", flush_seconds=60, flush_rows=10_000, max_queue_rows=5, on_drop=dropped.append
    )
    assert writer.put(entry("a", 4))
    assert not writer.put(entry("b", 2))
    assert dropped == [2] and writer.rows_dropped == 2
    writer.close()
    assert count_rows(tmp_path, "predictions") == 4
    assert not writer.put(entry("late", 1))  # closed: nothing is half-accepted


def test_rows_of_two_days_go_to_two_partitions_and_feedback(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path, "predictions", flush_seconds=60).start()
    writer.put(entry("a", 1, batch=False))
    writer.put(entry("b", 1, batch=False, ts=TS + 86_400_000_000))
    writer.put(entry("c", 1, batch=False, ts=TS + 3_600_000_000))
    writer.close()
    assert sorted(
        p.parent.relative_to(tmp_path / "predictions").as_posix() for p in log_files(tmp_path, "predictions")
    ) == [
        "date=2026-11-23/hour=02",
        "date=2026-11-23/hour=03",
        "date=2026-11-24/hour=02",
    ]
    fb = LogWriter(tmp_path, "feedback").start()
    fb.put(FeedbackEntry(request_ids=["a", "b:0"], labels=[7, 6.0], regression=False, ts_us=TS))
    fb.close()
    rows = duckdb.sql(
        f"SELECT f.request_id, f.label, p.prediction FROM read_parquet('{tmp_path}/feedback/*/*/*.parquet') f "
        f"JOIN read_parquet('{tmp_path}/predictions/*/*/*.parquet') p USING (request_id) ORDER BY 1"
    ).fetchall()
    assert rows == [("a", "7", "7")]
    assert log_files(tmp_path, "feedback")[0].name.startswith("fb-")


def test_unreadable_log_folder_keeps_rows_for_retry(tmp_path: Path) -> None:
    blocker = tmp_path / "predictions"
    blocker.write_text("a file where the folder should be")
    writer = LogWriter(tmp_path, "predictions", flush_seconds=60)
    writer.put(entry("a", 2))
    assert writer.flush() == 0 and writer.queued_rows == 2
    blocker.unlink()
    assert writer.flush() == 2 and count_rows(tmp_path, "predictions") == 2


def test_versions_with_different_class_lists_are_logged_side_by_side(tmp_path: Path) -> None:
    """A retrained model can know a class the old one never saw: its wider probabilities must not break a flush."""
    from dataclasses import replace

    writer = LogWriter(tmp_path, "predictions", flush_seconds=60, flush_rows=10_000).start()
    writer.put(entry("old", 2))
    wider = replace(
        entry("new", 2, version="2"), proba=np.tile([[0.2, 0.5, 0.3]], (2, 1)), classes=("5", "7", "9")
    )
    writer.put(wider)
    writer.close()
    rows = sorted(read_log(tmp_path, "predictions").to_pylist(), key=lambda r: r["request_id"])
    assert [r["request_id"] for r in rows] == ["new:0", "new:1", "old:0", "old:1"]
    assert json.loads(rows[0]["probabilities"]) == {"5": 0.2, "7": 0.5, "9": 0.3}
    assert json.loads(rows[2]["probabilities"]) == {"5": 0.25, "7": 0.75}


def test_an_entry_that_cannot_be_written_is_quarantined_and_the_others_land(tmp_path: Path) -> None:
    """A lone surrogate in a categorical value once failed every flush and queued every later row behind it."""
    counted: list[int] = []
    writer = LogWriter(tmp_path, "predictions", flush_seconds=60, on_quarantine=counted.append)
    poison = entry("bad", 2)
    poison.columns[1][0] = "\ud800"
    for e in (entry("a", 1, batch=False), entry("b", 3), poison, entry("c", 2)):
        writer.put(e)
    assert writer.flush() == 6
    assert writer.queued_rows == 0 and writer.rows_quarantined == 2 and counted == [2]
    writer.put(entry("later", 1, batch=False))
    writer.close()
    ids = sorted(r["request_id"] for r in read_log(tmp_path, "predictions").to_pylist())
    assert ids == ["a", "b:0", "b:1", "b:2", "c:0", "c:1", "later"]  # each once: nothing written twice
    [kept] = list((tmp_path / "quarantine").glob("*.jsonl"))
    [line] = kept.read_text(encoding="ascii").splitlines()
    record = json.loads(line)
    assert record["log"] == "predictions" and record["entry"]["request_id"] == "bad"
    assert record["entry"]["columns"][1][0] == "\ud800" and record["entry"]["columns"][0][1] is None
    assert "surrogate" in record["error"]


def test_feedback_with_an_unwritable_request_id_is_quarantined_alone(tmp_path: Path) -> None:
    fb = LogWriter(tmp_path, "feedback").start()
    fb.put(FeedbackEntry(request_ids=["a"], labels=[7], regression=False, ts_us=TS))
    fb.put(FeedbackEntry(request_ids=["\udc80x", "b"], labels=[6, 5], regression=False, ts_us=TS))
    fb.put(FeedbackEntry(request_ids=["c"], labels=[5], regression=False, ts_us=TS))
    fb.close()
    assert sorted(r["request_id"] for r in read_log(tmp_path, "feedback").to_pylist()) == ["a", "c"]
    assert fb.rows_quarantined == 2 and fb.queued_rows == 0
    assert len(list((tmp_path / "quarantine").glob("feedback-*.jsonl"))) == 1


def test_a_storage_fault_retries_only_the_files_not_written(tmp_path: Path) -> None:
    """Two files in one flush, the second folder unwritable: the first is not written again on the retry."""
    blocker = tmp_path / "predictions" / "date=2026-11-24" / "hour=02"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the folder should be")
    writer = LogWriter(tmp_path, "predictions", flush_seconds=60)
    writer.put(entry("today", 2))
    writer.put(entry("tomorrow", 1, batch=False, ts=TS + 86_400_000_000))
    assert writer.flush() == 2 and writer.queued_rows == 1 and writer.rows_quarantined == 0
    blocker.unlink()
    assert writer.flush() == 1 and writer.queued_rows == 0
    ids = sorted(r["request_id"] for r in read_log(tmp_path, "predictions").to_pylist())
    assert ids == ["today:0", "today:1", "tomorrow"]
    assert not list(tmp_path.rglob(".*.tmp"))


def test_predict_cpu_is_logged_as_each_rows_equal_share() -> None:
    import dataclasses

    measured = dataclasses.replace(entry("a", 4), predict_cpu_ms=2.0)
    unmeasured = entry("b", 2)
    table = PredictionEntry.table([measured, unmeasured])
    assert table.column("predict_cpu_ms").to_pylist() == [0.5, 0.5, 0.5, 0.5, None, None]


def test_two_writers_of_one_process_started_in_the_same_millisecond_keep_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their file series used to be named by host, pid and start millisecond only: the second writer's
    first file had the first's name, its rename replaced it, and that file's rows were gone. (Seen as
    'lost' rows in the concurrent compaction test, whose two writer threads sometimes start together.)"""
    import driftloop.stores.predlog as predlog

    frozen = time.time_ns()
    monkeypatch.setattr(predlog.time, "time_ns", lambda: frozen)
    first = LogWriter(tmp_path, "predictions", flush_seconds=60)
    second = LogWriter(tmp_path, "predictions", flush_seconds=60)
    for writer, name in ((first, "a"), (second, "b")):
        writer.put(entry(name, 2))
        assert writer.flush() == 2
        writer.close()
    assert sorted(read_log(tmp_path, "predictions")["request_id"].to_pylist()) == ["a:0", "a:1", "b:0", "b:1"]
    assert len(list((tmp_path / "predictions").rglob("*.parquet"))) == 2
