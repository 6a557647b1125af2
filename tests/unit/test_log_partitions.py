"""The prediction log's hour partitions: a reader of a time range opens only the overlapping partitions'
files (proved by corrupting every other file), and logs written in the legacy day layout still read."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from driftloop.monitor.logwindow import read_labeled, read_window
from driftloop.stores.logfiles import log_files
from driftloop.stores.predlog import FeedbackEntry, LogWriter, count_rows, read_log
from tests.unit.test_predlog_writer import entry

HOUR = datetime(2026, 11, 23, 10, tzinfo=UTC)


def us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def write_hours(log_dir: Path, hours: int, files_per_hour: int) -> list[str]:
    """`files_per_hour` flushes of one 2-row batch in each of the `hours` hours up to HOUR; the request ids."""
    ids = []
    writer = LogWriter(log_dir, "predictions", flush_seconds=60)
    for h in range(hours):
        for f in range(files_per_hour):
            rid = f"h{h}-f{f}"
            writer.put(entry(rid, 2, ts=us(HOUR - timedelta(hours=h) + timedelta(minutes=f))))
            writer.flush()
            ids += [f"{rid}:0", f"{rid}:1"]
    return ids


def corrupt_all_but(log_dir: Path, keep: list[Path]) -> int:
    """Overwrite every other log file with bytes no Parquet reader accepts; returns how many."""
    spoiled = 0
    for path in (log_dir / "predictions").rglob("*.parquet"):
        if path not in keep:
            path.write_bytes(b"not a parquet file")
            spoiled += 1
    return spoiled


def test_a_pass_over_the_last_hour_opens_only_that_hours_files(tmp_path: Path) -> None:
    write_hours(tmp_path, hours=30, files_per_hour=3)
    start, end = HOUR, HOUR + timedelta(hours=1)
    files = log_files(tmp_path, "predictions", start=start, end=end)
    assert len(files) == 3
    assert {f.parent.relative_to(tmp_path).as_posix() for f in files} == {
        "predictions/date=2026-11-23/hour=10"
    }
    assert corrupt_all_but(tmp_path, files) == 87
    window = read_window(tmp_path, "wine", start=start, end=end)
    assert sorted(window.rows["request_id"]) == sorted(f"h0-f{f}:{i}" for f in range(3) for i in (0, 1))
    # The corruption is real: a reader that opened another hour would fail like this.
    with pytest.raises(duckdb.Error):
        read_log(tmp_path, "predictions")


def test_last_n_rows_widen_the_span_only_as_needed(tmp_path: Path) -> None:
    write_hours(tmp_path, hours=50, files_per_hour=1)
    newest = log_files(tmp_path, "predictions", start=HOUR - timedelta(hours=23))
    assert len(newest) == 24
    corrupt_all_but(tmp_path, newest)
    window = read_window(tmp_path, "wine", end=HOUR + timedelta(hours=1), last=10)
    assert len(window.rows) == 10  # 2 rows an hour: the last day holds them, older days stay closed


def test_legacy_day_folders_and_hour_folders_read_together(tmp_path: Path) -> None:
    """A user upgrading keeps the history written before hourly partitions: both layouts are read, the
    legacy day folder as one partition covering its day."""
    ids = write_hours(tmp_path, hours=3, files_per_hour=2)  # 08:00-10:59 on 2026-11-23
    # The old writer put files straight into the day folder; move one day's worth there.
    old_day = tmp_path / "predictions" / "date=2026-11-22"
    old_day.mkdir()
    old = LogWriter(tmp_path / "old", "predictions", flush_seconds=60)
    old.put(entry("yesterday", 3, ts=us(HOUR - timedelta(hours=20))))
    old.flush()
    for f in (tmp_path / "old").rglob("*.parquet"):
        shutil.move(f, old_day / f.name)
    assert count_rows(tmp_path, "predictions") == len(ids) + 3
    span = read_log(tmp_path, "predictions", start=HOUR - timedelta(hours=21), end=HOUR - timedelta(hours=19))
    assert sorted(span["request_id"].to_pylist()) == ["yesterday:0", "yesterday:1", "yesterday:2"]
    assert [f.parent.name for f in log_files(tmp_path, "predictions", end=HOUR - timedelta(hours=3))] == [
        "date=2026-11-22"
    ]


def test_labels_come_from_the_span_on_and_unknown_ones_are_counted(tmp_path: Path) -> None:
    write_hours(tmp_path, hours=3, files_per_hour=1)
    fb = LogWriter(tmp_path, "feedback", flush_seconds=60)
    later = us(HOUR + timedelta(minutes=30))
    ids = ["h0-f0:0", "h1-f0:1", "h2-f0:0", "nobody"]
    fb.put(FeedbackEntry(ids, [7, 5, 5, 7], regression=False, ts_us=later))
    fb.flush()
    labeled, unknown = read_labeled(tmp_path, "wine", start=HOUR, end=HOUR + timedelta(hours=1))
    assert labeled["request_id"].tolist() == ["h0-f0:0"]  # h1 and h2 are before the span
    # Matched against predictions from one span length before the span: h1 is; h2 (two spans back, a label
    # no pass over this span could use) and "nobody" are not.
    assert unknown == 2
