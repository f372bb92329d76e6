"""Every case of the fuzz corpus, sent to every route of the app: no 500, no traceback.

The routes are walked from the app itself (every router it includes, pages and assets too), and
checked against the OpenAPI document, so a route added later is fuzzed without editing this test.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.routing import BaseRoute, Route

from tests.adversarial.fuzz.corpus import CASES, Case
from tests.conftest import AppClient

ADMIN_TOKEN = "operator-token-for-the-fuzz-corpus-0123456789"
_PARAM = re.compile(r"\{[^}]+\}")


def walk(routes: list[BaseRoute]) -> Iterator[Route]:
    """Every endpoint route, through FastAPI's included-router wrappers."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from walk(inner.routes)
        elif isinstance(route, Route):
            yield route


def operations(app: Any) -> list[tuple[str, str]]:
    found = {
        (method, route.path)
        for route in walk(app.router.routes)
        for method in route.methods or ()
        if method != "HEAD"
    }
    return sorted(found)


def target(path: str, case: Case) -> str:
    url = _PARAM.sub(case.path_value or "1", path)
    return url + ("?" + case.query.decode("latin-1") if case.query else "")


@pytest.fixture
async def app(make_settings: Callable[..., Any], start_app: Callable[..., Any]) -> AppClient:
    settings = make_settings(admin_token=ADMIN_TOKEN, stripe_webhook_secret=["whsec_fuzz"])
    client: AppClient = await start_app(settings)
    return client


async def test_every_corpus_case_on_every_route_is_answered_without_a_server_error(
    app: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    routes = operations(app.app)
    document = (await app.get("/openapi.json")).json()
    declared = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert declared <= set(routes), declared - set(routes)  # the walk sees every operation
    assert len(routes) > len(declared)  # and the pages the document leaves out

    server_errors: list[tuple[str, str, str, int]] = []
    with caplog.at_level(logging.WARNING):
        for case in CASES:
            for method, path in routes:
                response = await app.request(
                    method,
                    target(path, case),
                    content=case.body or None,
                    headers=list(case.headers),
                )
                if response.status_code >= 500:
                    server_errors.append((case.name, method, path, response.status_code))

    assert server_errors == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
