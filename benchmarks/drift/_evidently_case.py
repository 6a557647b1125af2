"""Run Evidently's default data-drift preset on two Parquet files; print wall times, peak memory, verdicts.

Runs inside the benchmark's own virtual environment (Evidently 0.7 needs pandas < 3).
"""

import json
import resource
import sys
import time

t0 = time.perf_counter()
import pandas as pd  # noqa: E402
from evidently import Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

reference_path, current_path = sys.argv[1], sys.argv[2]
t_import = time.perf_counter()
reference = pd.read_parquet(reference_path)
current = pd.read_parquet(current_path)
t_load = time.perf_counter()
cpu0 = time.process_time()
snapshot = Report([DataDriftPreset()], include_tests=True).run(current, reference)
t_run = time.perf_counter()
cpu_drift = time.process_time() - cpu0

verdicts, scores, methods = {}, {}, {}
dataset_drift = None
for test in snapshot.dict()["tests"]:
    name = test["name"]
    if name.startswith("Value Drift for column "):
        column = name[len("Value Drift for column ") :]
        verdicts[column] = test["status"] == "FAIL"
    elif name.startswith("Share of Drifted Columns"):
        dataset_drift = test["status"] == "FAIL"
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if config.get("type") == "evidently:metric_v2:ValueDrift":
        scores[config["column"]] = metric["value"]
        methods[config["column"]] = config["method"]

print(
    json.dumps(
        {
            "tool": "evidently",
            "seconds_import": t_import - t0,
            "seconds_load": t_load - t_import,
            "seconds_drift": t_run - t_load,
            "seconds_total": t_run - t0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cpu_seconds_drift": cpu_drift,
            "cpu_seconds": resource.getrusage(resource.RUSAGE_SELF).ru_utime
            + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
            "dataset_drift": dataset_drift,
            "verdicts": verdicts,
            "scores": scores,
            "methods": methods,
        }
    )
)
