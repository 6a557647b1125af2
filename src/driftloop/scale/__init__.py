"""Scale-out on Dask: batch scoring, drift and quality summaries merged across partitions, parallel search.

    cluster.dask_client(address)        a Client for an existing scheduler, or a local cluster
    scoring.score_batch(...)            `driftloop score`: validate, predict, write and log partition by partition
    drift.distributed_drift(...)        the monitoring engine's verdicts from mergeable per-partition summaries
    windows.log_window(...)             the prediction log as a Dask DataFrame, for drift over large windows
    search.distributed_search(...)      the trainer's Optuna search with trials spread over the workers

docs/scale.md says how to point driftloop at a cluster (local, Compose, Kubernetes, HPC).
"""
