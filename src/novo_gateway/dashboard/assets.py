"""The dashboards' stylesheet and script, served from the package (no CDN: works offline)."""

from __future__ import annotations

from importlib.resources import files
from typing import Final

from fastapi import APIRouter
from fastapi.responses import Response

router = APIRouter(prefix="/static", include_in_schema=False)

ASSETS: Final = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
_HEADERS: Final = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}


def asset(name: str) -> bytes:
    """The bytes of a file in the package's `static/` folder."""
    return files("novo_gateway").joinpath("static", name).read_bytes()


def _serve(name: str, media_type: str) -> None:
    body = asset(name)

    async def serve() -> Response:
        return Response(body, media_type=media_type, headers=_HEADERS)

    router.add_api_route(f"/{name}", serve, methods=["GET"], name=f"static-{name}")


for _name, _media_type in ASSETS.items():
    _serve(_name, _media_type)
