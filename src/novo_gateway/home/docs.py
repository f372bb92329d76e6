"""`/docs` (Swagger UI) and `/redoc` (ReDoc), served from this machine, never from a CDN.

The assets come from the `fastapi-offline` package, which ships current builds of Swagger UI
and ReDoc; Swagger UI is started by our own `static/docs.js`. The pages run under a
Content-Security-Policy that allows only this origin's scripts (no inline script), and may not
be framed, so the docs work offline and cannot be turned against the dashboards on the same
origin.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files
from typing import Final

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from novo_gateway.dashboard.assets import asset

router = APIRouter(include_in_schema=False)

OPENAPI_URL: Final = "/openapi.json"
ASSET_PREFIX: Final = "/static/docs"
# Swagger UI and ReDoc set inline styles (style attributes, styled-components); ReDoc's search
# runs in a worker built from a blob URL; both draw icons from data: URLs.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
_ASSET_HEADERS: Final = {
    "Cache-Control": "public, max-age=86400",
    "X-Content-Type-Options": "nosniff",
}
_BUNDLED: Final = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}


def _page(title: str, head: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f'<link rel="icon" type="image/png" href="{ASSET_PREFIX}/favicon.png">'
        f"{head}</head>{body}</html>\n"
    )


SWAGGER_PAGE: Final = _page(
    "Novo Gateway - API documentation",
    f'<link rel="stylesheet" href="{ASSET_PREFIX}/swagger-ui.css">',
    f'<body data-openapi-url="{OPENAPI_URL}"><div id="swagger-ui"></div>'
    f'<script src="{ASSET_PREFIX}/swagger-ui-bundle.js"></script>'
    f'<script src="{ASSET_PREFIX}/docs.js"></script></body>',
)
# ReDoc's standalone build starts itself on a <redoc> element.
REDOC_PAGE: Final = _page(
    "Novo Gateway - API reference",
    "",
    f'<body><redoc spec-url="{OPENAPI_URL}"></redoc>'
    f'<script src="{ASSET_PREFIX}/redoc.standalone.js"></script></body>',
)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return HTMLResponse(SWAGGER_PAGE, headers=PAGE_HEADERS)


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return HTMLResponse(REDOC_PAGE, headers=PAGE_HEADERS)


def _serve(name: str, body: bytes, media_type: str) -> None:
    async def serve() -> Response:
        return Response(body, media_type=media_type, headers=_ASSET_HEADERS)

    router.add_api_route(f"{ASSET_PREFIX}/{name}", serve, methods=["GET"], name=f"docs-{name}")


for _name, _media_type in _BUNDLED.items():
    _serve(_name, files("fastapi_offline").joinpath("static", _name).read_bytes(), _media_type)
_serve("docs.js", asset("docs.js"), "text/javascript")
