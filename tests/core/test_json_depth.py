"""Hostile JSON bodies are a 400, never a 500: nesting is bounded wherever a body is parsed."""

from __future__ import annotations

import logging

import pytest

from novo_gateway.kit import jsonbody
from tests.conftest import AppClient

# 3 KB of arrays nested 1,500 deep: Python's parser raised RecursionError on it (a 500 with a
# 5 KB traceback, unauthenticated, through the body-credential fallback).
DEEP = b"[" * 1500 + b"]" * 1500
DEEP_OBJECT = b'{"email": ' * 1500 + b'"a"' + b"}" * 1500

# The endpoints that read `email`/`password` from the body when no key is sent (accounts/deps.py).
CREDENTIAL_FALLBACK = [
    ("GET", "/billing/usage"),
    ("GET", "/billing/usage/endpoints"),
    ("GET", "/billing/invoices"),
    ("GET", "/billing/subscription"),
    ("GET", "/auth/api-keys"),
]


@pytest.mark.parametrize(("method", "path"), CREDENTIAL_FALLBACK)
@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["arrays", "objects"])
async def test_deeply_nested_credentials_body_is_a_400(
    client: AppClient, method: str, path: str, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        response = await client.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )

    assert response.status_code == 400
    assert response.json() == {"error": "Bad Request", "message": jsonbody.TOO_DEEP}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_no_route_answers_deep_nesting_with_a_server_error(client: AppClient) -> None:
    document = (await client.get("/openapi.json")).json()
    answers = {}
    for path, operations in document["paths"].items():
        for method in operations:
            url = path.replace("{id}", "1")
            response = await client.request(
                method, url, content=DEEP, headers={"Content-Type": "application/json"}
            )
            answers[f"{method.upper()} {path}"] = response.status_code
    assert len(answers) >= 20
    assert {k: v for k, v in answers.items() if v >= 500} == {}
    assert answers["POST /billing/portal"] == 400


def test_nesting_up_to_the_limit_is_parsed() -> None:
    depth = jsonbody.MAX_DEPTH
    nested: list[object] = []
    for _ in range(depth - 1):
        nested = [nested]
    assert jsonbody.loads(b"[" * depth + b"]" * depth) == nested


@pytest.mark.parametrize(
    "document",
    [
        b"[" * 65 + b"]" * 65,
        b'{"a":' * 65 + b"1" + b"}" * 65,
        b"[[]" * 100 + b"]" * 100,  # no long run of openers: found by peeling pairs
        b"[" * 400_000 + b"]" * 400_000,
    ],
)
def test_nesting_past_the_limit_is_a_value_error(document: bytes) -> None:
    with pytest.raises(ValueError, match="nested deeper than 64"):
        jsonbody.loads(document)


def test_brackets_inside_strings_do_not_count() -> None:
    document = b'{"name": "' + b"[" * 500 + b'\\"{{{{", "x": [' + b"1," * 100 + b"1]}"
    assert jsonbody.loads(document)["name"] == "[" * 500 + '"{{{{'
