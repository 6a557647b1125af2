"""Where driftloop's distributed work runs: an existing Dask scheduler, a local cluster, or this process.

    with dask_client(address) as client:     # None or "local": a LocalCluster sized for this machine
        ...

The address comes from `--dask`, else `scale.dask_scheduler` in the config (which `DRIFTLOOP_DASK_SCHEDULER`
overrides). Workers of an existing cluster must have the same driftloop installed and see the same stores
and files (shared storage); `dask_client` checks the version before any work is sent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from driftloop.errors import UserError

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["ENV_SCHEDULER", "LOCAL", "WORKER_CONFIG", "check_workers", "dask_client", "resolve_address"]

log = logging.getLogger(__name__)

ENV_SCHEDULER = "DRIFTLOOP_DASK_SCHEDULER"
CONNECT_TIMEOUT_SECONDS = 20


#: Dask settings for the worker processes of a local cluster; deploy/dask/distributed.yaml, which the image puts
#: in /etc/dask, says the same for every other cluster and why (in short: Dask's MALLOC_TRIM_THRESHOLD_ costs
#: a forest model 16-23 % of its batch scoring speed).
WORKER_CONFIG: dict[str, Any] = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}

LOCAL = "local"
"""The `--dask` value (or `scale.dask_scheduler`) that asks for a local cluster on this machine."""


def resolve_address(explicit: str | None, configured: str | None = None) -> str | None:
    """The scheduler to use: `--dask` wins, then the config value (already env-overridden), then the env.

    Returns None when nothing is set, `LOCAL` for 'local', else a checked address. One meaning of `--dask`
    for every command (`train`, `score`): a malformed address is a UserError naming where it came from,
    raised before any cluster is started or any file is read.
    """
    sources = (
        (explicit, "--dask"),
        (configured, f"scale.dask_scheduler ({ENV_SCHEDULER})"),
        (os.environ.get(ENV_SCHEDULER), ENV_SCHEDULER),
    )
    for candidate, source in sources:
        if candidate:
            value = candidate.strip()
            if value.lower() == LOCAL:
                return LOCAL
            _check_address(value, source)
            return value
    return None


def _check_address(address: str, source: str) -> None:
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import backends

    hint = f"{source} {address!r}: not a Dask scheduler address; give tcp://host:8786 or 'local'"
    scheme, location = parse_address(address, strict=False)
    if scheme not in backends:
        raise UserError(f"{hint} (unknown protocol {scheme!r}; known: {', '.join(sorted(backends))})")
    if scheme in ("tcp", "tls", "ws", "wss"):
        try:
            host, port = parse_host_port(location, 8786)
        except ValueError:
            raise UserError(f"{hint} (the port must be a number)") from None
        if not host:
            raise UserError(f"{hint} (no host)")
        if not 0 < int(port) < 65536:
            raise UserError(f"{hint} (port {port} out of range)")


@contextmanager
def dask_client(
    address: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    processes: bool = True,
) -> Iterator[Client]:
    """A connected Client; without an address (or `LOCAL`), a LocalCluster that is closed on exit.

    `processes=False` runs the workers as threads of this process (for small inputs and tests: no start-up
    cost, nothing to pickle). Local workers get one thread each by default, so LightGBM and NumPy do not
    oversubscribe the cores (the nanny also sets OMP_NUM_THREADS=1 in each worker process).
    """
    import dask
    from distributed import Client, LocalCluster

    if address and address != LOCAL:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_SECONDS)
        except (OSError, TimeoutError) as exc:
            raise UserError(
                f"cannot reach the Dask scheduler at {address} (from --dask, scale.dask_scheduler or "
                f"{ENV_SCHEDULER}): {exc}"
            ) from None
        try:
            check_workers(client)
            yield client
        finally:
            client.close()
        return
    workers = n_workers or max(1, min(4, os.cpu_count() or 1))
    with dask.config.set(WORKER_CONFIG):  # read when each nanny starts, i.e. inside the constructor
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            memory_limit=memory_limit,
            dashboard_address=":0",  # any free port: parallel clusters (tests, jobs) never collide on 8787
            silence_logs=logging.WARNING,
        )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def check_workers(client: Client) -> None:
    """Every worker must import the same driftloop version as this client, or tasks fail obscurely later."""
    try:
        mine = version("driftloop")
    except PackageNotFoundError:  # running from a source tree without metadata
        return
    found: dict[str, Any] = client.run(_driftloop_version, on_error="return")
    if not found:
        raise UserError("the Dask cluster has no workers yet; start some, then retry")
    bad = {w: v for w, v in found.items() if v != mine}
    if bad:
        listed = ", ".join(f"{w}: {v}" for w, v in sorted(bad.items())[:5])
        raise UserError(f"Dask workers must run driftloop {mine}; found {listed}")


def _driftloop_version() -> str:
    # Looked up by name on the worker; pickled by reference, so a worker without driftloop fails to
    # unpickle it and `on_error="return"` reports that instead of raising.
    try:
        return version("driftloop")
    except PackageNotFoundError:
        return "not installed"
