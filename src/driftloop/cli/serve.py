"""`driftloop serve`: run the prediction service with uvicorn (uvloop, httptools), one or several workers.

Called by `driftloop serve` (`cli/app.py`); also runnable as `python -m driftloop.cli.serve`.
Before the workers start it prepares what they share: the validated config (passed in the environment),
a fresh Prometheus multiprocess folder (so /metrics adds up all workers), one thread per worker for native
prediction, and the model folders of the current deployment fetched once into the local cache (so no
worker imports MLflow or downloads the same files).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from driftloop.cli.options import ConfigOption
from driftloop.errors import UserError

log = logging.getLogger("driftloop.serve")


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (config serving.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (config serving.port).")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (config serving.workers).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Serve predictions: champion/challenger routing, hot swap, prediction log, Prometheus metrics."""
    import orjson
    import uvicorn
    from pydantic import ValidationError

    from driftloop.config import format_validation_error, load_config

    try:
        cfg = load_config(config)
        for option, key, value in (
            ("--host", "host", host),
            ("--port", "port", port),
            ("--workers", "workers", workers),
        ):
            if value is None:
                continue
            try:
                setattr(cfg.serving, key, value)  # validated on assignment, by the config's own rules
            except ValidationError as exc:
                reason = format_validation_error(exc)[0].split(": ", 1)[-1]
                raise UserError(f"{option}: {reason} (serving.{key})") from None
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One native thread per worker: N workers on N cores, instead of N x cores OpenMP threads fighting.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Before anything imports prometheus_client: it picks file-backed values at import time.
    prom_dir, owned = _prometheus_dir()
    from driftloop.serve.app import CONFIG_ENV

    os.environ[CONFIG_ENV] = orjson.dumps(cfg.model_dump(mode="json")).decode()
    prefetch_models(cfg)
    s = cfg.serving
    log.info("serving %s on http://%s:%d with %d worker(s)", cfg.project.name, s.host, s.port, s.workers)
    try:
        uvicorn.run(
            "driftloop.ui.server:create_app_from_env",  # the service with the loop page at /ui
            factory=True,
            host=s.host,
            port=s.port,
            workers=s.workers,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=30,
            timeout_keep_alive=30,
            proxy_headers=False,  # no proxy in front by default; saves a middleware pass per request
        )
    finally:
        if owned:
            shutil.rmtree(prom_dir, ignore_errors=True)


def _prometheus_dir() -> tuple[str, bool]:
    """The multiprocess metrics folder: the operator's (emptied, as the client library requires) or ours."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        given_folder = Path(given)
        given_folder.mkdir(parents=True, exist_ok=True)
        for stale in given_folder.glob("*.db"):
            stale.unlink(missing_ok=True)
        return given, False
    folder = tempfile.mkdtemp(prefix="driftloop-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder, True


def prefetch_models(cfg: object) -> None:
    """Cache the deployed versions' folders once; failures are only logged (the workers retry and report)."""
    from driftloop.stores.metadata import MetadataStore
    from driftloop.stores.tracking import TrackingStore

    try:
        store = MetadataStore.connect(cfg.stores.resolved_database_url(), create=False)  # type: ignore[attr-defined]
        try:
            dep = store.get_deployment(cfg.project.name)  # type: ignore[attr-defined]
        finally:
            store.close()
        tracking = TrackingStore.from_config(cfg)  # type: ignore[arg-type]
        for version in (dep.champion, dep.challenger):
            if version:
                tracking.model_dir(version)
    except Exception as exc:
        log.warning("could not pre-fetch the deployed models (workers will retry): %s", exc)


def main() -> None:
    typer.run(serve)


if __name__ == "__main__":
    main()
