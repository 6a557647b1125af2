"""Run driftloop's drift engine on two Parquet files; print wall times, peak memory, verdicts."""

import json
import resource
import sys
import time

t0 = time.perf_counter()
import pandas as pd  # noqa: E402

from driftloop.monitor.drift import DriftDetector  # noqa: E402
from driftloop.monitor.tables import infer_columns  # noqa: E402

reference_path, current_path = sys.argv[1], sys.argv[2]
t_import = time.perf_counter()
reference = pd.read_parquet(reference_path)
current = pd.read_parquet(current_path)
t_load = time.perf_counter()
cpu0 = time.process_time()
specs, _ = infer_columns(reference, current)
detector = DriftDetector(specs).fit(reference)
t_fit = time.perf_counter()
result = detector.evaluate(current)
t_run = time.perf_counter()
cpu_drift = time.process_time() - cpu0

print(
    json.dumps(
        {
            "tool": "driftloop",
            "seconds_import": t_import - t0,
            "seconds_load": t_load - t_import,
            "seconds_fit": t_fit - t_load,
            "seconds_evaluate": t_run - t_fit,
            "seconds_drift": t_run - t_load,
            "seconds_total": t_run - t0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cpu_seconds_drift": cpu_drift,
            "cpu_seconds": resource.getrusage(resource.RUSAGE_SELF).ru_utime
            + resource.getrusage(resource.RUSAGE_SELF).ru_stime,
            "dataset_drift": result.dataset_drift,
            "verdicts": {c.column: c.drift for c in result.columns},
            "scores": {c.column: c.statistic for c in result.columns},
            "methods": {c.column: c.method for c in result.columns},
        }
    )
)
