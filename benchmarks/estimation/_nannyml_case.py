"""NannyML's estimates for every job of the estimation benchmark; runs inside NannyML's own virtual environment
(`.work/venv-nannyml`, built by `run.py`).

Usage: _nannyml_case.py MANIFEST.json OUT.jsonl REPEATS. Each job of the manifest names a reference and an analysis
Parquet file written by `run.py`: model outputs (`proba_<class>` columns, `pred`), features, the label `y`
(reference only) and `window` (analysis only). NannyML runs as its documentation shows: CBPE (binary or
multiclass, metrics roc_auc, f1, accuracy) or DLE (mae, rmse) with its default settings, one `fit` on the
reference and one `estimate` over all windows, each window a chunk (a timestamp per window, chunk period one
day). Wall seconds are of fit + estimate only (imports and file reading excluded), the fastest of REPEATS
runs (as for driftloop); the first job is run once untimed first, so no tool pays its lazy imports inside
the timing.
"""

import json
import sys
import time
import warnings

import pandas as pd


def run_job(job: dict) -> tuple[pd.DataFrame, float]:
    import nannyml as nml

    ref = pd.read_parquet(job["reference"])
    ana = pd.read_parquet(job["analysis"])
    day = pd.Timestamp("2024-01-01")
    size = max(1, int(job["window_rows"]))
    # Reference chunks of about a window's size (NannyML derives its sampling error from them).
    ref["ts"] = day - pd.Timedelta(days=400) + pd.to_timedelta(pd.RangeIndex(len(ref)) // size, unit="D")
    ana["ts"] = day + pd.to_timedelta(ana["window"].astype(int), unit="D")
    features = job["features"]
    started = time.perf_counter()
    if job["task"] == "regression":
        est = nml.DLE(
            feature_column_names=features,
            y_pred="pred",
            y_true="y",
            metrics=["mae", "rmse"],
            timestamp_column_name="ts",
            chunk_period="D",
        )
    elif job["task"] == "binary":
        est = nml.CBPE(
            y_pred_proba="proba_1",
            y_pred="pred",
            y_true="y",
            metrics=["roc_auc", "f1", "accuracy"],
            problem_type="classification_binary",
            timestamp_column_name="ts",
            chunk_period="D",
        )
    else:
        est = nml.CBPE(
            y_pred_proba={int(c): f"proba_{c}" for c in job["classes"]},
            y_pred="pred",
            y_true="y",
            metrics=["roc_auc", "f1", "accuracy"],
            problem_type="classification_multiclass",
            timestamp_column_name="ts",
            chunk_period="D",
        )
    est.fit(ref)
    result = est.estimate(ana.drop(columns=["window"]))
    seconds = time.perf_counter() - started
    return result.filter(period="analysis").to_df(), seconds


def main() -> None:
    manifest, out, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    import nannyml

    warnings.filterwarnings("ignore")
    with open(manifest) as fh:
        jobs = json.loads(fh.read())
    run_job(jobs[0])  # warm-up: lazy imports and first-call costs stay out of the timing
    with open(out, "w") as fh:
        for job in jobs:
            frame, seconds = run_job(job)
            for _ in range(repeats - 1):  # the fastest of REPEATS runs, as for driftloop
                seconds = min(seconds, run_job(job)[1])
            metrics = ["mae", "rmse"] if job["task"] == "regression" else ["accuracy", "f1", "roc_auc"]
            windows = []
            for _, row in frame.iterrows():
                window = int((row[("chunk", "start_date")] - pd.Timestamp("2024-01-01")).days)
                windows.append(
                    {
                        "window": window,
                        "metrics": {
                            m: {
                                "value": float(row[(m, "value")]),
                                "low": float(row[(m, "lower_confidence_boundary")]),
                                "high": float(row[(m, "upper_confidence_boundary")]),
                            }
                            for m in metrics
                        },
                    }
                )
            record = {
                "job": job["id"],
                "seconds": seconds,
                "windows": windows,
                "version": nannyml.__version__,
            }
            fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
