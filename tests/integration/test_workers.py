"""Several worker processes log and count as one: `novo-gateway serve` with WORKERS=2."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from novo_gateway.kit.config import Settings
from tests.integration.processes import GatewayProcess, settings_env

# Requests are sent until both workers have answered some; never more than this many rounds.
MAX_ROUNDS = 50
_LIVE_200 = re.compile(
    r'^novo_http_requests_total\{[^}]*route="/health/live",status="200"\} (\S+)$', re.M
)


def _all(log_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]


def _access(log_path: Path, request: str) -> list[dict[str, Any]]:
    return [
        e
        for e in _all(log_path)
        if e["logger"] == "novo_gateway.access" and e["message"].startswith(request + " 200")
    ]


def _until_both_workers_answer(log_path: Path, request: str, send: Any) -> int:
    """Send rounds of 8 concurrent requests until two worker pids have logged one; the count."""
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        for _ in range(MAX_ROUNDS):
            list(pool.map(lambda _: send(), range(8)))
            sent += 8
            if len({e["pid"] for e in _access(log_path, request)}) == 2:
                return sent
    raise AssertionError(f"one worker answered all {sent} requests")


def test_two_workers_write_json_access_lines_and_serve_one_metrics_view(
    settings: Settings, tmp_path: Path
) -> None:
    env = {**settings_env(settings), "WORKERS": "2", "LOG_LEVEL": "info"}
    log_path = tmp_path / "serve.log"
    counts: list[float] = []
    with GatewayProcess(env, log_path) as gateway:

        def live() -> None:
            assert httpx.get(f"{gateway.url}/health/live", timeout=10).status_code == 200

        def scrape() -> None:
            found = _LIVE_200.search(httpx.get(f"{gateway.url}/metrics", timeout=10).text)
            assert found is not None
            counts.append(float(found.group(1)))

        secret = "nk_" + "s" * 40
        for _ in range(8):  # whichever worker answers logs the query redacted, once
            httpx.get(f"{gateway.url}/api/v1/insights?api_key={secret}", timeout=10)
        calls = _until_both_workers_answer(log_path, "GET /health/live", live)
        scrapes = _until_both_workers_answer(log_path, "GET /metrics", scrape)

    # Every scrape, whichever worker answered it, counts both workers' requests.
    assert set(counts) == {float(calls)}
    # Every line of both workers is JSON, and each request has its access line, ours only:
    # uvicorn's own would show the key.
    assert secret not in log_path.read_text()
    redacted = [e for e in _all(log_path) if "api_key=[REDACTED]" in e["message"]]
    assert len(redacted) == 8
    assert len(_access(log_path, "GET /health/live")) == calls
    assert len(_access(log_path, "GET /metrics")) == scrapes
