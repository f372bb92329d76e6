"""The site's icon: served from the package with caching headers, and linked from every page."""

from __future__ import annotations

import pytest

from tests.conftest import AppClient


async def test_favicon_is_served_and_cached(client: AppClient) -> None:
    response = await client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/x-icon"
    assert response.headers["cache-control"] == "public, max-age=86400"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # an ICO file holding one image
    assert int.from_bytes(response.content[4:6], "little") == 1


@pytest.mark.parametrize("path", ["/", "/dashboard/login"])
async def test_pages_link_the_favicon(client: AppClient, path: str) -> None:
    page = (await client.get(path)).text
    assert '<link rel="icon" href="/favicon.ico"' in page
