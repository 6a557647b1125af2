"""Scale-out on Dask: batch scoring, drift and quality summaries merged across partitions, parallel search.

Every entry point takes a `distributed.Client`; `cluster.dask_client(address)` makes one for an existing
scheduler or a local cluster.
"""
