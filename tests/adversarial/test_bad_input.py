"""Part 1, the edges a generator rarely reaches: huge bodies and headers, deep JSON, odd text.

One gateway process (PostgreSQL, Redis), attacked over real sockets. Every answer is a 4xx in
the one error shape (413 for bodies over MAX_BODY_BYTES, 400 for malformed input; the HTTP
server's own 400/431 for malformed requests), never a 5xx; memory stays bounded; each refused
request leaves one access-log line and no error line.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.adversarial.conftest import GatewayFactory
from tests.adversarial.fuzz.corpus import CASES
from tests.adversarial.harness import Gateway
from tests.adversarial.system import Account, Figures, register

TEN_MB = 10 * 1024 * 1024
POST_BODIES = [
    "/auth/register",
    "/auth/login",
    "/auth/api-keys",
    "/billing/portal",
    "/billing/subscription/cancel",
    "/webhooks/stripe",
    "/api/v1/audience/analyze",
    "/api/v1/campaign/generate",
    "/api/v1/notifications/send",
    "/api/v1/bulk/process",
]
# Strings no field should choke on: NUL, CR/LF (header and log forging), a lone surrogate,
# right-to-left override, BOM, zero-width joiner, non-characters, astral emoji, combining marks.
ODD_STRINGS = [
    "\x00",
    "a\x00b",
    "line\r\nX-Injected: 1",
    "\r\n\r\n<script>alert(1)</script>",
    "\ud800",
    "\udfff\ud800",
    "\u202egnp.exe",
    "\ufeffbom",
    "a\u200db",
    "\uffff\ufffe",
    "\U0001f600" * 50,
    "e\u0301\u0301\u0301\u0301",
    "\x1b[31mred",
    "%00%0d%0a",
    "' OR 1=1 --",
    "{{7*7}}${7*7}",
    "../../etc/passwd",
]


@pytest.fixture(scope="module")
def target(factory: GatewayFactory, redis_server: Any) -> Iterator[Gateway]:
    gateway = factory.gateway(
        factory.database("postgres"),
        redis_url=redis_server.url,
        rate_limit_key_prefix="badinput",
        max_body_bytes=1_048_576,
    )
    gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
async def account(target: Gateway) -> AsyncIterator[Account]:
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as client:
        yield await register(client, "edge")


def _error_lines(gateway: Gateway) -> list[str]:
    return [line for line in gateway.log_text().splitlines() if '"level": "error"' in line]


def _raw(gateway: Gateway, request: bytes) -> bytes:
    """Send bytes as they are (no client library cleans them up); the status line back."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


def _status(status_line: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3})", status_line)
    assert match, status_line
    return int(match.group(1))


async def test_ten_megabyte_bodies_are_refused_with_413_and_memory_stays_bounded(
    target: Gateway, account: Account, figures: Figures
) -> None:
    before = target.rss_mb()
    answers = []
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as client:
        for path in POST_BODIES:
            body = b'{"items": ["' + b"a" * TEN_MB + b'"]}'
            declared = await client.post(path, content=body, headers=account.auth)

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(10):
                    yield b"a" * (TEN_MB // 10)

            streamed = await client.post(path, content=chunks(), headers=account.auth)
            answers += [declared, streamed]

    assert {r.status_code for r in answers} == {413}
    assert all(r.json()["error"] == "Payload Too Large" for r in answers)
    grown = target.rss_mb() - before
    figures.add("bad_input", oversized_bodies=len(answers), rss_growth_mb=round(grown, 1))
    assert grown < 64, f"peak memory grew by {grown:.0f} MB for refused bodies"
    assert _error_lines(target) == []


async def test_huge_and_numerous_headers_are_refused_with_431_and_memory_stays_bounded(
    target: Gateway, account: Account, figures: Figures
) -> None:
    key = account.key.encode()
    requests = [
        b"GET /api/v1/insights HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key + b"\r\n"
        b"X-Big: " + b"a" * 1_000_000 + b"\r\n\r\n",
        b"GET /api/v1/insights HTTP/1.1\r\nHost: x\r\nX-API-Key: "
        + key
        + b"\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(20_000))
        + b"\r\n",
        b"GET /api/v1/insights HTTP/1.1\r\nHost: x\r\nX-API-Key: " + b"k" * 100_000 + b"\r\n\r\n",
        b"GET /api/v1/insights?" + b"a=1&" * 50_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    before = target.rss_mb()
    statuses = [_status(_raw(target, request)) for request in requests * 3]
    grown = target.rss_mb() - before
    figures.add("bad_input", huge_header_requests=len(statuses))
    # uvicorn's parser (httptools) sets no limit on headers: the gateway refuses them (431)
    # before any work; a 50,000-parameter query is a 400. Their memory is returned: repeating
    # them does not grow the process.
    assert statuses == [431, 431, 431, 400] * 3, str(statuses)
    assert grown < 64, f"peak memory grew by {grown:.0f} MB"
    assert _error_lines(target) == []


@pytest.mark.parametrize("path", POST_BODIES)
async def test_deeply_nested_json_is_a_400_not_a_crash(
    target: Gateway, account: Account, path: str, figures: Figures
) -> None:
    depth = 400_000  # fits in the 1 MiB body limit: "[" and "]" are one byte each
    bodies = [
        b"[" * depth + b"]" * depth,
        b'{"a":' * (depth // 5) + b"1" + b"}" * (depth // 5),
        b'{"name": ' + b"[" * depth + b"]" * depth + b"}",
    ]
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as client:
        answers = [
            await client.post(
                path, content=body, headers={**account.auth, "Content-Type": "application/json"}
            )
            for body in bodies
        ]
    figures.add("bad_input", nested_json_requests=len(answers))
    assert all(400 <= r.status_code < 500 for r in answers), [r.status_code for r in answers]
    assert all(set(r.json()) >= {"error", "message"} for r in answers)
    assert _error_lines(target) == []


def _string_fields(document: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(method, path, field) for every string property of every JSON request body."""
    schemas = document["components"]["schemas"]

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in schema:
            return resolve(schemas[schema["$ref"].rsplit("/", 1)[1]])
        for option in schema.get("anyOf", []):
            if "$ref" in option or option.get("type") == "object":
                return resolve(option)
        return schema

    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            body = resolve(content["application/json"]["schema"])
            for name, prop in body.get("properties", {}).items():
                kinds = {prop.get("type")} | {o.get("type") for o in prop.get("anyOf", [])}
                if "string" in kinds:
                    yield method.upper(), path, name


async def test_odd_text_in_every_string_field_is_answered_without_a_server_error(
    target: Gateway, account: Account, figures: Figures
) -> None:
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as client:
        document = (await client.get("/openapi.json")).json()
        fields = list(_string_fields(document))
        answers: list[tuple[str, str, str, int]] = []
        for method, path, name in fields:
            for value in ODD_STRINGS:
                # Encoded by hand: json.dumps keeps lone surrogates as \ud800 escapes.
                body = json.dumps({name: value}).encode()
                response = await client.request(
                    method,
                    path,
                    content=body,
                    headers={**account.auth, "Content-Type": "application/json"},
                )
                answers.append((method, path, name, response.status_code))
        names = await client.post("/auth/api-keys", json={"name": "\x00"}, headers=account.auth)
    figures.add("bad_input", string_fields=len(fields), odd_string_requests=len(answers))
    assert len(fields) >= 10
    assert [a for a in answers if a[3] >= 500] == []
    assert names.status_code == 400  # a NUL never reaches the database
    assert _error_lines(target) == []


async def test_control_characters_in_headers_query_and_path_are_refused(
    target: Gateway, account: Account, figures: Figures
) -> None:
    key = account.key.encode()
    requests = [
        b"GET /api/v1/insights HTTP/1.1\r\nHost: x\r\nX-API-Key: nk_\x00abc\r\n\r\n",
        b"GET /api/v1/insights HTTP/1.1\r\nHost: x\r\nX-API-Key: \xff\xfe\r\n\r\n",
        b"GET /api/v1/insights HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xe2\x80\xae\r\n\r\n",
        b"GET /api/v1/insights?api_key=%00%0d%0a HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/insights?api_key=%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/analytics?period=%00 HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key + b"\r\n\r\n",
        b"GET /api/v1/insights HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\x01b\r\n"
        b"X-API-Key: " + key + b"\r\n\r\n",
        b"GET /api/v1/%ff%00 HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key + b"\r\n\r\n",
        b"GET /%ff%00/..%2f..%2fetc HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /billing/usage?api_key=%00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /billing/usage HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\r\n\r\n",
        b"GET /billing/usage/endpoints?days=%00 HTTP/1.1\r\nHost: x\r\nX-API-Key: "
        + key
        + b"\r\n\r\n",
    ]
    statuses = [_status(_raw(target, request)) for request in requests]
    # Bytes past ASCII are obs-text, legal in a header, but no Idempotency-Key (printable ASCII
    # only, as the OpenAPI document says): a clear 400, not a 500.
    latin = _status(
        _raw(
            target,
            b"GET /api/v1/insights HTTP/1.1\r\nHost: x\r\nIdempotency-Key: \xff\xfe\r\n"
            b"X-API-Key: " + key + b"\r\n\r\n",
        )
    )
    figures.add("bad_input", raw_header_query_path_requests=len(statuses) + 1)
    assert all(400 <= s < 500 for s in statuses), str(statuses)
    assert latin == 400
    assert _error_lines(target) == []


async def test_every_refused_request_leaves_exactly_one_access_log_line(
    target: Gateway, account: Account
) -> None:
    request_ids = [f"edgecase{i:04d}" for i in range(20)]
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as client:
        for i, request_id in enumerate(request_ids):
            headers = {**account.auth, "X-Request-Id": request_id}
            if i % 2:
                await client.post("/api/v1/bulk/process", content=b"x" * 2_000_000, headers=headers)
            else:
                await client.post("/api/v1/bulk/process", content=b"[" * 100, headers=headers)
    lines = target.log_text().splitlines()
    for request_id in request_ids:
        assert sum(1 for line in lines if request_id in line) == 1, request_id


async def test_an_undeclared_method_is_a_405_whose_allow_header_lists_every_declared_one(
    target: Gateway, account: Account
) -> None:
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as client:
        document = (await client.get("/openapi.json")).json()
        wrong: dict[str, tuple[int, str]] = {}
        for path, operations in document["paths"].items():
            if "{" in path:
                path = path.replace("{id}", "1")
            declared = {m.upper() for m in operations}
            response = await client.request("PATCH", path, headers=account.auth)
            allowed = {m.strip() for m in response.headers.get("allow", "").split(",")} - {"HEAD"}
            if response.status_code != 405 or allowed != declared:
                wrong[path] = (response.status_code, response.headers.get("allow", ""))
    assert wrong == {}


async def test_the_fuzz_corpus_on_every_operation_gets_no_server_error(
    target: Gateway, account: Account, figures: Figures
) -> None:
    """tests/adversarial/fuzz/corpus.py, each case on each documented operation, with and
    without the account's key: no 5xx, and nothing logged at error level (no traceback)."""
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as client:
        document = (await client.get("/openapi.json")).json()
        operations = [(m.upper(), p) for p, ops in document["paths"].items() for m in ops]
        failures: list[tuple[str, str, str, int]] = []
        sent = 0
        for case in CASES:
            for method, path in operations:
                url = re.sub(r"\{[^}]+\}", case.path_value or "1", path)
                if case.query:
                    url += "?" + case.query.decode("latin-1")
                for auth in ({}, account.auth):
                    headers = [*case.headers, *((k.encode(), v.encode()) for k, v in auth.items())]
                    response = await client.request(
                        method, url, content=case.body or None, headers=headers
                    )
                    sent += 1
                    if response.status_code >= 500:
                        failures.append((case.name, method, path, response.status_code))
    figures.add("bad_input", corpus_cases=len(CASES), corpus_requests=sent)
    assert failures == []
    assert _error_lines(target) == []
    assert "Traceback" not in target.log_text()
