"""Slow and greedy clients against a real `novo-gateway serve`, over raw sockets.

A client that sends half its headers, nothing at all, or a body that never ends is answered 408
and cut off once HEADER_TIMEOUT_SECONDS or BODY_TIMEOUT_SECONDS have passed, while other clients
are served as usual; one client IP holds at most MAX_CONNECTIONS_PER_IP connections (429 past
it). Before these deadlines, uvicorn kept such connections open for as long as the client liked.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from novo_gateway.billing.setup import run_setup
from novo_gateway.kit.config import Settings
from tests.billing.conftest import Emulator
from tests.integration.processes import GatewayProcess, free_port, settings_env, wait_for

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0
PER_IP = 40
# How long past its deadline a connection may take to be cut off, on a busy 2-core machine.
SLACK = 10.0
PASSWORD = "correct horse battery staple"


@pytest.fixture
def gateway(
    make_stripe_settings: Callable[..., Settings], emulator: Emulator, tmp_path: Path
) -> Iterator[GatewayProcess]:
    settings = make_stripe_settings()
    port = free_port()
    setup = asyncio.run(run_setup(settings, webhook_url=f"http://127.0.0.1:{port}/webhooks/stripe"))
    env = settings_env(settings)
    env.update(
        STRIPE_PRICE_ID=setup.price_id,
        STRIPE_WEBHOOK_SECRET=setup.webhook_secret or "",
        HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        MAX_CONNECTIONS_PER_IP=str(PER_IP),
        LOG_LEVEL="info",
        USAGE_REPORTING_INTERVAL="600000",
    )
    process = GatewayProcess(env, tmp_path / "gateway.log", port)
    try:
        yield process.wait_until_up()
    finally:
        process.stop()


@dataclass
class Cut:
    """How a slow connection ended: what the server sent, and when it closed the socket."""

    answer: bytes
    seconds: float


def _connect(gateway: GatewayProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=HEADER_TIMEOUT + SLACK)
    return sock


def _wait_for_close(sock: socket.socket, started: float) -> Cut:
    """Read until the server closes (a socket timeout past the deadline fails the test)."""
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    return Cut(data, time.monotonic() - started)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _body(answer: bytes) -> dict[str, str]:
    body: dict[str, str] = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    return body


def _errors_in_log(gateway: GatewayProcess) -> list[str]:
    text = gateway.log_path.read_text()
    return [line for line in text.splitlines() if '"level": "error"' in line or "Traceback" in line]


def _register(url: str) -> str:
    reply = httpx.post(
        url + "/auth/register",
        json={"email": "ada@example.com", "password": PASSWORD, "name": "Ada"},
        timeout=30,
    )
    assert reply.status_code == 201, reply.text
    key: str = reply.json()["apiKey"]["key"]
    return key


@pytest.mark.parametrize("backend", ["sqlite"])
def test_slow_header_clients_are_cut_off_with_408_while_others_are_served(
    gateway: GatewayProcess,
) -> None:
    key = _register(gateway.url)
    started = time.monotonic()
    silent = [_connect(gateway) for _ in range(15)]
    half_sent = [_connect(gateway) for _ in range(15)]
    for sock in half_sent:
        sock.sendall(b"GET /api/v1/insights HTTP/1.1\r\nHost: x\r\nX-API-Key: ")

    # Served meanwhile, on connections of their own.
    served = [
        httpx.get(gateway.url + "/api/v1/insights", headers={"X-API-Key": key}, timeout=30)
        for _ in range(5)
    ]
    cuts = [_wait_for_close(sock, started) for sock in silent + half_sent]

    assert [r.status_code for r in served] == [200] * 5
    # Half-sent headers are answered 408; a connection that sent nothing is closed silently (a
    # browser's preconnect must not read a 408 as the answer to its next request).
    assert [_status(cut.answer) for cut in cuts] == [0] * 15 + [408] * 15
    assert [cut.answer for cut in cuts[:15]] == [b""] * 15
    assert _body(cuts[-1].answer) == {
        "error": "Request Timeout",
        "message": "The request headers did not arrive within 2s. Send the whole request at once.",
    }
    slowest = max(cut.seconds for cut in cuts)
    assert min(cut.seconds for cut in cuts) >= HEADER_TIMEOUT - 0.1
    assert slowest < HEADER_TIMEOUT + SLACK
    assert _errors_in_log(gateway) == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_slow_body_clients_are_cut_off_with_408_while_others_are_served(
    gateway: GatewayProcess,
) -> None:
    key = _register(gateway.url)
    requests = [
        b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Stripe-Signature: t=1,v1=00\r\nContent-Length: 5000\r\n\r\n{"id": ',
        b"GET /billing/usage HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 5000\r\n\r\n{"email": ',
        b"POST /auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 5000\r\n\r\n{"email": ',
        b"POST /api/v1/bulk/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-API-Key: " + key.encode() + b'\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"ite\r\n',
    ]
    started = time.monotonic()
    slow = []
    for request in requests * 5:
        sock = _connect(gateway)
        sock.sendall(request)
        slow.append(sock)

    served = [
        httpx.post(
            gateway.url + "/api/v1/bulk/process",
            json={"items": [{"id": "1", "n": 2}]},
            headers={"X-API-Key": key},
            timeout=30,
        )
        for _ in range(5)
    ]
    cuts = [_wait_for_close(sock, started) for sock in slow]

    assert [r.status_code for r in served] == [200] * 5, served[0].text
    assert {_status(cut.answer) for cut in cuts} == {408}, [c.answer[:60] for c in cuts]
    assert _body(cuts[0].answer)["message"].startswith("The request body did not arrive within 3s.")
    assert min(cut.seconds for cut in cuts) >= BODY_TIMEOUT - 0.1
    assert max(cut.seconds for cut in cuts) < BODY_TIMEOUT + SLACK
    assert _errors_in_log(gateway) == []

    # The access log says what the clients got (for those whose body the app was reading); the
    # app writes its line just after the socket is closed.
    def logged_as_cut_off() -> bool:
        log = gateway.log_path.read_text()
        return log.count("POST /webhooks/stripe 408") == log.count("GET /billing/usage 408") == 5

    wait_for(logged_as_cut_off, seconds=SLACK)
    # The gateway is still whole: a new client is served.
    assert httpx.get(gateway.url + "/health", timeout=10).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"])
def test_one_client_ip_holds_at_most_the_configured_connections(
    gateway: GatewayProcess,
) -> None:
    held = [_connect(gateway) for _ in range(PER_IP)]
    # The next one is answered at once, before it sends anything, and closed.
    refused = _wait_for_close(_connect(gateway), time.monotonic())
    # A kept connection is still served.
    held[0].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    kept = _wait_for_close(held[0], time.monotonic())
    for sock in held[1:]:
        sock.close()

    assert _status(refused.answer) == 429
    assert _body(refused.answer) == {
        "error": "Too Many Requests",
        "message": f"Too many open connections from your address (at most {PER_IP}). "
        "Reuse a connection, or close idle ones.",
    }
    assert _status(kept.answer) == 200
    # Closed connections are counted out: a new client is served again.
    deadline = time.monotonic() + SLACK
    while True:
        reply = _wait_for_close(_sent(gateway, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"), 0)
        if _status(reply.answer) == 200 or time.monotonic() > deadline:
            break
    assert _status(reply.answer) == 200


def _sent(gateway: GatewayProcess, request: bytes) -> socket.socket:
    sock = _connect(gateway)
    sock.sendall(request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    return sock
