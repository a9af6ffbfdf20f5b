"""The API's documentation pages, /docs (Swagger UI) and /redoc, working without internet: their scripts,
styles and icon are files of this server, from the ``fastapi-offline`` package."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# The docs pages load Swagger UI's and ReDoc's JS/CSS from here, not from a CDN: /docs works without internet.
# The files come with the fastapi-offline package (its static/ folder: swagger-ui-bundle.js, swagger-ui.css,
# redoc.standalone.js, favicon.png); only its files are used, the app stays a plain FastAPI.
DOCS_ASSETS = "/docs/static"
DOCS_ASSETS_PACKAGE = ("fastapi_offline", "static")


def add_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc whose scripts, styles and icon are files of this server (DOCS_ASSETS):
    FastAPI's own pages load them from a CDN, so without internet they stay blank. Like /openapi.json
    they need no key (no route dependency)."""
    app.mount(DOCS_ASSETS, StaticFiles(packages=[DOCS_ASSETS_PACKAGE]), name="docs-static")
    openapi_url, redirect_url = app.openapi_url, app.swagger_ui_oauth2_redirect_url
    assert openapi_url is not None and redirect_url is not None, "the docs pages need the spec's URL"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect_url}",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None})  # no badge from validator.swagger.io either

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png", with_google_fonts=False)
