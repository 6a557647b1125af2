"""The wine story end to end, exactly as `make demo` runs it: real server, real controller, real HTTP."""

from pathlib import Path

import pytest
from rich.console import Console

from driftloop.demo import run_demo
from driftloop.stores.predlog import read_log


@pytest.mark.slow
def test_drift_retrain_canary_promotion(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    console = Console(record=True, width=140)
    summary = run_demo(folder, console=console, rate=150, red_requests=450, after_promotion=300, timeout=240)
    out = console.export_text()
    (tmp_path / "demo-output.txt").write_text(out)
    assert summary.promoted, out
    assert summary.final_version != summary.first_version
    assert summary.failed == 0
    assert summary.accuracy_before is not None and summary.accuracy_after is not None
    assert summary.accuracy_after > summary.accuracy_before + 0.05, out
    for kind in ("trigger_fired", "retrain_finished", "gate_passed", "canary_started", "promoted"):
        assert kind in out, f"{kind} missing from the timeline:\n{out}"
    # Every 200 answer is in the prediction log exactly once, with the prediction that was served.
    logged = read_log(folder / ".driftloop" / "logs", "predictions", where="arm <> 'shadow'").to_pylist()
    served = {r.request_id: r for r in summary.served if r.status == 200}
    assert len(logged) == len(served)
    by_id = {row["request_id"]: row for row in logged}
    assert set(by_id) == set(served)
    assert all(
        by_id[rid]["prediction"] == s.prediction and by_id[rid]["model_version"] == s.version
        for rid, s in served.items()
    )
    assert summary.report is not None and summary.report.is_file()
