"""Compaction and retention of the prediction log: no row lost or read twice while writers write and
readers read, SIGKILL at any moment, and a rerun finishes the job; retention keeps labelled rows."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from driftloop.stores.logfiles import log_files
from driftloop.stores.logmaint import compact, expire
from driftloop.stores.predlog import ErrorEntry, FeedbackEntry, LogWriter, read_log
from tests.unit.test_log_partitions import us
from tests.unit.test_predlog_writer import entry


def ids_in_log(log_dir: Path, kind: str = "predictions") -> Counter[str]:
    table = read_log(log_dir, kind)  # type: ignore[arg-type]
    return Counter(table["request_id"].to_pylist() if table.num_columns else [])


def small_files(log_dir: Path, prefix: str, hours: list[datetime], per_hour: int) -> Counter[str]:
    """One file per flush, `per_hour` flushes of a 2-row batch into each hour; the row ids written."""
    writer = LogWriter(log_dir, "predictions", flush_seconds=60)
    written: Counter[str] = Counter()
    for h, hour in enumerate(hours):
        for f in range(per_hour):
            rid = f"{prefix}-{h}-{f}"
            writer.put(entry(rid, 2, ts=us(hour + timedelta(seconds=f))))
            writer.flush()
            written.update([f"{rid}:0", f"{rid}:1"])
    return written


def past_hours(n: int) -> list[datetime]:
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return [top - timedelta(hours=k) for k in range(1, n + 1)]


def test_compaction_replaces_closed_hours_and_a_rerun_deletes_the_inputs(tmp_path: Path) -> None:
    hours = past_hours(2)
    written = small_files(tmp_path, "a", hours, per_hour=5)
    current = LogWriter(tmp_path, "predictions", flush_seconds=60)
    current.put(entry("now", 1, batch=False))
    current.flush()
    written["now"] += 1
    before = len(log_files(tmp_path, "predictions"))
    # Inputs stay until their compacted file is `delete_after` old: readers drop them meanwhile.
    done = compact(tmp_path, grace=timedelta(0), delete_after=timedelta(hours=1))
    assert (done.partitions_compacted, done.files_compacted, done.files_deleted) == (2, 10, 0)
    on_disk = list((tmp_path / "predictions").rglob("*.parquet"))
    assert len(on_disk) == before + 2
    assert len(log_files(tmp_path, "predictions")) == 3  # two compacted hours and the open one
    assert ids_in_log(tmp_path) == written
    later = compact(tmp_path, grace=timedelta(0), delete_after=timedelta(0))
    assert (later.partitions_compacted, later.files_deleted) == (0, 10)
    assert len(list((tmp_path / "predictions").rglob("*.parquet"))) == 3
    assert ids_in_log(tmp_path) == written


def test_a_late_file_in_a_compacted_hour_is_read_and_compacted_again(tmp_path: Path) -> None:
    hour = past_hours(1)
    written = small_files(tmp_path, "a", hour, per_hour=3)
    compact(tmp_path, grace=timedelta(0), delete_after=timedelta(0))
    written += small_files(tmp_path, "late", hour, per_hour=2)  # a writer retrying a storage fault
    assert ids_in_log(tmp_path) == written
    compact(tmp_path, grace=timedelta(0), delete_after=timedelta(0))
    compact(tmp_path, grace=timedelta(0), delete_after=timedelta(0))
    assert len(list((tmp_path / "predictions").rglob("*.parquet"))) == 1
    assert ids_in_log(tmp_path) == written


def test_the_open_hour_and_the_grace_period_are_left_alone(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    hours = [now.replace(minute=0, second=0, microsecond=0)]
    small_files(tmp_path, "a", hours, per_hour=3)
    assert compact(tmp_path, grace=timedelta(0)).partitions_compacted == 0
    assert compact(tmp_path, now=hours[0] + timedelta(hours=1, minutes=5)).partitions_compacted == 0
    assert compact(tmp_path, now=hours[0] + timedelta(hours=1, minutes=11)).partitions_compacted == 1


def test_concurrent_writers_readers_and_compaction_lose_and_repeat_nothing(tmp_path: Path) -> None:
    """Writers add files to closed hours (late files, the hardest case) while a compactor runs with no
    grace and no deletion delay and readers read: every read has each row at most once and every row
    flushed before the read began; at the end the log holds exactly the rows written."""
    hours = past_hours(3)
    durable: Counter[str] = Counter()
    lock = threading.Lock()
    writing = threading.Event()
    writing.set()
    failures: list[BaseException] = []
    reads = [0]
    compactions = [0]

    def guarded(work: object) -> object:
        def run() -> None:
            try:
                work()  # type: ignore[operator]
            except BaseException as exc:  # reported by the test below, not lost with the thread
                failures.append(exc)

        return run

    def writer(k: int) -> None:
        log = LogWriter(tmp_path, "predictions", flush_seconds=60)
        rng = random.Random(k)
        for i in range(60):
            rid = f"w{k}-{i}"
            log.put(entry(rid, 3, ts=us(rng.choice(hours) + timedelta(seconds=i))))
            assert log.flush() == 3
            with lock:
                durable.update(f"{rid}:{j}" for j in range(3))

    def compactor() -> None:
        while writing.is_set():
            compactions[0] += compact(
                tmp_path, grace=timedelta(0), delete_after=timedelta(0)
            ).partitions_compacted

    def reader() -> None:
        while writing.is_set():
            with lock:
                before = Counter(durable)
            seen = ids_in_log(tmp_path)
            with lock:
                after = Counter(durable)
            repeated = [rid for rid, n in seen.items() if n > 1]
            assert not repeated, f"read twice: {repeated[:5]}"
            assert not before - seen, f"lost: {list(before - seen)[:5]}"
            assert not seen - after, f"never written: {list(seen - after)[:5]}"
            reads[0] += 1

    writers = [threading.Thread(target=guarded(lambda k=k: writer(k))) for k in range(2)]
    others = [threading.Thread(target=guarded(compactor)), threading.Thread(target=guarded(reader))]
    for t in writers + others:
        t.start()
    for t in writers:
        t.join()
    writing.clear()
    for t in others:
        t.join()
    assert not failures, failures
    assert reads[0] >= 3 and compactions[0] >= 1, (reads, compactions)
    compact(tmp_path, grace=timedelta(0), delete_after=timedelta(0))
    compact(tmp_path, grace=timedelta(0), delete_after=timedelta(0))
    assert ids_in_log(tmp_path) == durable
    assert sum(durable.values()) == 2 * 60 * 3
    assert len(list((tmp_path / "predictions").rglob("*.parquet"))) == 3  # one per hour


COMPACT_FOREVER = """
import sys
from datetime import timedelta
from driftloop.stores.logmaint import compact
while True:
    compact(sys.argv[1], grace=timedelta(0), delete_after=timedelta(0))
"""


def test_sigkill_at_any_moment_loses_and_duplicates_nothing_and_a_rerun_finishes(tmp_path: Path) -> None:
    rng = random.Random(7)
    hours = past_hours(4)
    written: Counter[str] = Counter()
    for round_ in range(6):
        written += small_files(tmp_path, f"r{round_}", hours, per_hour=6)
        proc = subprocess.Popen([sys.executable, "-c", COMPACT_FOREVER, str(tmp_path)], cwd=os.getcwd())
        time.sleep(rng.uniform(1.0, 2.5))  # start-up (imports) takes about a second
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        assert ids_in_log(tmp_path) == written, f"round {round_}"
    compact(tmp_path, grace=timedelta(0), delete_after=timedelta(0))
    compact(tmp_path, grace=timedelta(0), delete_after=timedelta(0))
    assert ids_in_log(tmp_path) == written
    assert len(list((tmp_path / "predictions").rglob("*.parquet"))) == len(hours)
    assert not list(tmp_path.rglob(".compact-*"))


def test_a_temp_file_left_by_a_killed_run_is_removed_and_not_read(tmp_path: Path) -> None:
    hour = past_hours(1)
    written = small_files(tmp_path, "a", hour, per_hour=2)
    first = log_files(tmp_path, "predictions")[0]
    leftover = first.parent / ".compact-1-dead.parquet.tmp"
    leftover.write_bytes(first.read_bytes())
    assert ids_in_log(tmp_path) == written
    assert compact(tmp_path, grace=timedelta(0), delete_after=timedelta(0)).files_deleted == 1
    assert not leftover.exists() and ids_in_log(tmp_path) == written


def test_retention_deletes_expired_partitions_but_keeps_labelled_rows_retraining_uses(tmp_path: Path) -> None:
    now = datetime(2026, 12, 3, 10, tzinfo=UTC)
    old, older, recent = now - timedelta(days=40), now - timedelta(days=100), now - timedelta(days=1)
    writer = LogWriter(tmp_path, "predictions", flush_seconds=60)
    for rid, moment in [("old", old), ("older", older), ("recent", recent)]:
        for f in range(2):
            writer.put(entry(f"{rid}{f}", 2, ts=us(moment + timedelta(minutes=f))))
            writer.flush()
    fb = LogWriter(tmp_path, "feedback", flush_seconds=60)
    fb.put(
        FeedbackEntry(["old0:1", "older0:0"], [7, 7], regression=False, ts_us=us(old + timedelta(hours=2)))
    )
    fb.put(FeedbackEntry(["recent1:0"], [5], regression=False, ts_us=us(recent + timedelta(hours=1))))
    fb.flush()
    errors = LogWriter(tmp_path, "errors", flush_seconds=60)
    errors.put(ErrorEntry("bad", us(old), "wine", "1", "champion", "online", 500, "ValueError", 1, 2.0))
    errors.flush()

    done = expire(tmp_path, retention_days=30, labels_since=now - timedelta(days=60), now=now)
    # The 100-day-old hour is outside the retraining window: gone, labelled or not. The 40-day-old one is
    # cut to its labelled row; its feedback stays; the expired error partition goes.
    assert (done.partitions_expired, done.partitions_pruned, done.rows_kept) == (2, 1, 1)
    assert sorted(ids_in_log(tmp_path)) == ["old0:1", "recent0:0", "recent0:1", "recent1:0", "recent1:1"]
    assert sorted(ids_in_log(tmp_path, "feedback")) == ["old0:1", "older0:0", "recent1:0"]
    assert not list((tmp_path / "errors").rglob("*.parquet"))
    again = expire(tmp_path, retention_days=30, labels_since=now - timedelta(days=60), now=now)
    assert (again.partitions_expired, again.partitions_pruned) == (0, 0)  # pruned once, not every run
    compact(tmp_path, now=now, delete_after=timedelta(0))  # the pruned hour's inputs go
    assert sorted(ids_in_log(tmp_path)) == ["old0:1", "recent0:0", "recent0:1", "recent1:0", "recent1:1"]

    gone = expire(tmp_path, retention_days=30, labels_since=None, keep_labels=False, now=now)
    assert gone.partitions_expired == 2  # the pruned prediction hour and the old feedback hour
    assert sorted(ids_in_log(tmp_path)) == ["recent0:0", "recent0:1", "recent1:0", "recent1:1"]
    assert not (tmp_path / "predictions" / f"date={old:%Y-%m-%d}").exists()


def test_log_commands_report_counts_and_refuse_bad_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from tests.integration.test_data_cli import cli_in_process

    (tmp_path / "driftloop.yaml").write_text("data:\n  target: quality\nlog:\n  retention_days: 30\n")
    logs = tmp_path / ".driftloop" / "logs"
    written = small_files(logs, "a", past_hours(2), per_hour=3)
    code, out, _ = cli_in_process(tmp_path, monkeypatch, capsys, "log", "compact", "--grace", "0s", "--json")
    assert code == 0 and json.loads(out)["partitions_compacted"] == 2
    assert ids_in_log(logs) == written
    code, out, _ = cli_in_process(tmp_path, monkeypatch, capsys, "log", "expire", "--json")
    assert code == 0 and json.loads(out)["partitions_expired"] == 0
    code, _, err = cli_in_process(tmp_path, monkeypatch, capsys, "log", "compact", "--delete-after", "soon")
    assert code == 2 and "'soon' is not a duration" in err
    code, _, err = cli_in_process(tmp_path, monkeypatch, capsys, "log", "expire", "--days", "0")
    assert code == 2 and "--days" in err
