"""The loop page's routes: /ui (the page), /ui/assets/* (its JS, CSS and the Plotly bundle of the installed
`plotly` package: no CDN) and the read-only JSON routes under /ui/api/ that the page polls.

The JSON answers are computed in a worker thread and kept for `CACHE_SECONDS`: a wall screen polling every
5 s, or ten of them, costs one store read per route per worker every couple of seconds, whatever the number of
viewers, and the predict path's event loop never waits on a store. Act buttons call the existing admin API
(/v1/admin/...) with the token the user types; nothing here changes the deployment.
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from driftloop.errors import NotFoundError, UserError
from driftloop.serve.tracing import MAX_REQUEST_ID
from driftloop.stores import Stores
from driftloop.ui import api
from driftloop.ui.schemas import ui_answer

__all__ = ["CACHE_SECONDS", "CSP", "STATIC", "UiContext", "install_ui"]

STATIC = Path(__file__).parent / "static"
CACHE_SECONDS = 2.0
# Scripts and data from this server only; Plotly sets inline styles on the charts it draws.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
_VERSION = re.compile(r"[0-9]{1,32}")
_REQUEST_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_REQUEST_ID}}}")  # what X-Request-ID takes


@dataclass
class UiContext:
    """What the routes read from: the stores, and (when the page rides on `driftloop serve`) the model pool."""

    stores: Callable[[], Stores]
    pool_status: Callable[[], dict[str, Any]] | None = None
    regression: Callable[[], bool | None] = lambda: None
    admin: bool = False
    """Whether this origin has the admin API (/v1/admin/...): `driftloop ui` alone has none."""


class _Cache:
    """Answers kept for a few seconds; one computation at a time per key, the others wait for its result."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._keys: dict[str, threading.Lock] = {}
        self._values: dict[str, tuple[float, bytes]] = {}

    def get(self, key: str, compute: Callable[[], Any]) -> bytes:
        with self._lock:
            lock = self._keys.setdefault(key, threading.Lock())
        with lock:
            hit = self._values.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.seconds:
                return hit[1]
            body = orjson.dumps(compute(), option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
            with self._lock:
                if len(self._values) > 256:  # explain and version keys are the user's: keep the cache bounded
                    self._values.clear()
                self._values[key] = (time.monotonic(), body)
            return body


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def install_ui(app: FastAPI, ctx: UiContext) -> None:
    """Add /ui, its assets and its JSON routes to `app`."""
    cache = _Cache(CACHE_SECONDS)

    def js(payload: bytes, status: int = 200) -> Response:
        return Response(payload, status, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def answer(key: str, compute: Callable[[Stores], Any]) -> Response:
        try:
            body = await run_in_threadpool(cache.get, key, lambda: compute(ctx.stores()))
        except NotFoundError as exc:
            return js(orjson.dumps({"detail": str(exc)}), 404)
        except UserError as exc:
            return js(orjson.dumps({"detail": str(exc)}), 422)
        return js(body)

    template = (STATIC / "index.html").read_text()

    @app.get("/ui", include_in_schema=False)
    async def page(request: Request) -> Response:
        # Asset and API addresses under the proxy prefix the server runs behind, if any (--root-path).
        root = html.escape(request.scope.get("root_path", "").rstrip("/"), quote=True)
        headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}
        return Response(template.replace("{{ROOT}}", root), media_type="text/html", headers=headers)

    @app.get("/ui/assets/plotly.min.js", include_in_schema=False)
    async def plotly_js() -> FileResponse:
        return FileResponse(
            _plotly_js(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
        )

    app.mount("/ui/assets", StaticFiles(directory=STATIC), name="ui-assets")

    @app.get("/ui/api/now", summary="Loop page: the deployment, its versions and the canary's evidence",
             responses=ui_answer("Now"), tags=["ui"])  # fmt: skip
    async def now() -> Response:
        pool = ctx.pool_status() if ctx.pool_status else None

        def compute(stores: Stores) -> dict[str, Any]:
            return api.now(stores, pool=pool, regression=ctx.regression()) | {"admin": ctx.admin}

        return await answer("now", compute)

    def read_route(name: str, summary: str, schema: str, reader: Callable[[Stores], Any]) -> None:
        async def route() -> Response:
            return await answer(name, reader)

        app.get(f"/ui/api/{name}", summary=f"Loop page: {summary}", responses=ui_answer(schema), tags=["ui"],
                operation_id=f"ui_{name}")(route)  # fmt: skip

    read_route("history", "every deployment change (the canary staircase)", "History", api.history)
    read_route(
        "monitoring", "drift, drift share and performance per monitoring pass", "Monitoring", api.monitoring
    )
    read_route("traffic", "rows/s, error rate and p99 latency per minute (last hour)", "Traffic", api.traffic)
    read_route("events", "loop events and alerts", "Events", api.events)

    @app.get("/ui/api/versions/{version}", summary="Loop page: one model version's lineage and gate report",
             responses=ui_answer("VersionLineage", not_found=True), tags=["ui"])  # fmt: skip
    async def version(version: str) -> Response:
        if not _VERSION.fullmatch(version):
            return js(orjson.dumps({"detail": "version: must be a registered version number, e.g. 3"}), 422)
        return await answer(f"version:{version}", lambda st: api.version(st, version))

    @app.get("/ui/api/explain", summary="Loop page: where one request's answer came from",
             responses=ui_answer("Explanation", not_found=True), tags=["ui"])  # fmt: skip
    async def explain(request_id: str) -> Response:
        if not _REQUEST_ID.fullmatch(request_id):
            detail = f"request_id: must be 1 to {MAX_REQUEST_ID} visible ASCII characters (no spaces)"
            return js(orjson.dumps({"detail": detail}), 422)
        return await answer(f"explain:{request_id}", lambda st: api.explain(st, request_id))
