"""The apps that carry the loop page: the prediction service with /ui added (what `driftloop serve` runs),
and a page-only app for `driftloop ui` (a project with no server running, or a laptop looking at shared stores).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from driftloop.config import Config
from driftloop.serve import docs
from driftloop.serve.app import PredictFastPath
from driftloop.serve.app import create_app_from_env as create_serving_app_from_env
from driftloop.stores import Stores, open_stores
from driftloop.ui.routes import UiContext, install_ui

__all__ = ["create_app_from_env", "create_ui_app", "with_ui"]


def with_ui(served: PredictFastPath) -> PredictFastPath:
    """The prediction service with the page added: it reads the worker's own store connections and pool."""
    service = served.service
    cfg = service.cfg

    def stores() -> Stores:
        return Stores(cfg=cfg, metadata=service.metadata, tracking=service.tracking)

    def regression() -> bool | None:
        state = service.pool.state
        return None if state is None else state.champion.regression

    ctx = UiContext(
        stores=stores,
        pool_status=service.pool.status,
        regression=regression,
        admin=bool(cfg.serving.admin_token),
    )
    install_ui(served.app, ctx)
    return served


def create_app_from_env() -> PredictFastPath:
    """Factory for the uvicorn workers of `driftloop serve`."""
    return with_ui(create_serving_app_from_env())


def create_ui_app(cfg: Config) -> FastAPI:
    """The page alone, over the project's stores: no model loaded, no admin API (Act says so)."""
    opened: list[Stores] = []

    def stores() -> Stores:
        if not opened:
            opened.append(open_stores(cfg))
        return opened[0]

    app = FastAPI(
        title="driftloop loop page", version="1", docs_url=None, redoc_url=None,
        description="The loop page's JSON routes, read from the project's stores.",
    )  # fmt: skip
    install_ui(app, UiContext(stores=stores))
    docs.install_docs(app)

    @app.get("/", include_in_schema=False)
    async def root() -> Any:
        from fastapi.responses import RedirectResponse

        return RedirectResponse("ui")

    return app
