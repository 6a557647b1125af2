"""Evidently's default data-drift preset on the messy tables of `tests/drift_messy_tables.py`; prints JSON.

Runs inside the benchmark's own virtual environment (Evidently 0.7 needs pandas < 3). For each seed it
runs the preset twice: on the tables as built, and on the same values in NumPy-backed dtypes (Evidently's
inference leaves nullable dtypes out; this says what it would answer for their values).

    .venv-evidently/bin/python _evidently_messy.py ROOT SEED [SEED ...]
"""

import json
import sys
import traceback

root, seeds = sys.argv[1], [int(s) for s in sys.argv[2:]]
sys.path.insert(0, root)

from evidently import Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402
from tests.drift_messy_tables import messy_pair, to_numpy_dtypes  # noqa: E402


def run(reference, current) -> dict:
    try:
        snapshot = Report([DataDriftPreset()], include_tests=True).run(current, reference)
    except Exception as exc:  # Evidently's own failure is a figure to record, not a crash of the comparison
        return {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=3)}
    columns, dataset_drift = {}, None
    for test in snapshot.dict()["tests"]:
        name = test["name"]
        if name.startswith("Value Drift for column "):
            columns.setdefault(name[len("Value Drift for column ") :], {})["drift"] = test["status"] == "FAIL"
        elif name.startswith("Share of Drifted Columns"):
            dataset_drift = test["status"] == "FAIL"
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type") == "evidently:metric_v2:ValueDrift":
            col = columns.setdefault(config["column"], {})
            col["score"], col["method"] = metric["value"], config["method"]
    return {"dataset_drift": dataset_drift, "columns": columns}


out = {}
for seed in seeds:
    reference, current, _ = messy_pair(seed)
    out[str(seed)] = {
        "as_built": run(reference, current),
        "numpy_dtypes": run(to_numpy_dtypes(reference), to_numpy_dtypes(current)),
    }
print(json.dumps(out))
