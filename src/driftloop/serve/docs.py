"""Swagger UI (/docs) and ReDoc (/redoc) served from the service itself, with no CDN.

FastAPI's own pages load their JavaScript, CSS, favicon and (ReDoc) Google Fonts from the internet, so on an
air-gapped cluster or a laptop offline they stay blank. The assets come from the `fastapi-offline` wheel
(swagger-ui-dist and redoc's standalone bundle, pinned in uv.lock) and are mounted under /docs-assets;
Swagger UI's online validator badge is switched off for the same reason. ReDoc's bundle still draws its
"API docs by Redocly" logo from cdn.redoc.ly (unconditionally, hiding it when it fails to load): the pages'
Content-Security-Policy allows only this server, so the browser never sends that request, nor any other.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

__all__ = ["ASSETS_PATH", "ASSETS_URL", "CSP", "install_docs"]

ASSETS_URL = "/docs-assets"


def _assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


ASSETS_PATH = _assets_dir()
_REDIRECT = "/docs/oauth2-redirect"
# FastAPI's pages start the UIs with inline scripts and styles; ReDoc runs its search in a blob: worker.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CSP
    return page


def install_docs(app: FastAPI) -> None:
    """/docs, /docs/oauth2-redirect, /redoc and their assets. The app must be made with docs_url=None and
    redoc_url=None (FastAPI's CDN pages)."""
    assert app.docs_url is None and app.redoc_url is None, "FastAPI's CDN docs pages are still on"
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_PATH), name="docs-assets")

    def url(request: Request, path: str) -> str:
        return f"{request.scope.get('root_path', '')}{path}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return _offline(
            get_swagger_ui_html(
                openapi_url=url(request, app.openapi_url or "/openapi.json"),
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=url(request, _REDIRECT),
                swagger_js_url=url(request, f"{ASSETS_URL}/swagger-ui-bundle.js"),
                swagger_css_url=url(request, f"{ASSETS_URL}/swagger-ui.css"),
                swagger_favicon_url=url(request, f"{ASSETS_URL}/favicon.png"),
                # validatorUrl null: no badge fetched from validator.swagger.io.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get(_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return _offline(
            get_redoc_html(
                openapi_url=url(request, app.openapi_url or "/openapi.json"),
                title=f"{app.title} - ReDoc",
                redoc_js_url=url(request, f"{ASSETS_URL}/redoc.standalone.js"),
                redoc_favicon_url=url(request, f"{ASSETS_URL}/favicon.png"),
                with_google_fonts=False,
            )
        )
