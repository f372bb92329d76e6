"""`/docs` and `/redoc` reference only this origin's assets, under a CSP with no framing."""

from __future__ import annotations

import re

import pytest

from tests.conftest import AppClient


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_docs_pages_load_only_local_assets_under_a_csp(client: AppClient, path: str) -> None:
    page = await client.get(path)

    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text  # no inline script: the CSP allows none
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/static/docs/") for s in sources), sources
    for source in sources:
        asset = await client.get(source)
        assert asset.status_code == 200, source
        assert len(asset.content) > 100
