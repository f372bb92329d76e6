"""The deployment's nginx (deploy/nginx.conf, Debian's nginx) in front of two gateway processes
on one PostgreSQL and one Redis: TLS, the redirect, and per-client-IP limits through the proxy.

Clients connect from distinct loopback addresses (127.0.0.2, 127.0.0.3): nginx sees each as a
client of its own and appends it to X-Forwarded-For; the gateways trust only nginx's address.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from novo_gateway.billing.setup import run_setup
from novo_gateway.kit.config import Settings
from tests.conftest import IN_CI
from tests.integration.processes import GatewayProcess, free_port, settings_env, wait_for

ROOT = Path(__file__).resolve().parents[2]
IP_LIMIT = 6  # RATE_LIMIT_PER_MINUTE x GLOBAL_RATE_LIMIT_MULTIPLIER below
PASSWORD = "correct horse battery staple"


def _need(command: str) -> str:
    found = shutil.which(command) or shutil.which(command, path="/usr/sbin:/usr/bin")
    if found is None:
        if IN_CI:
            pytest.fail(f"{command} is not installed (.ci/run installs it)")
        pytest.skip(f"{command} is not installed")
    return found


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    subprocess.run(
        [_need("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def gateways(
    make_stripe_settings: Callable[..., Settings], redis_url: str, tmp_path: Path
) -> Iterator[list[GatewayProcess]]:
    settings = make_stripe_settings(redis_url=redis_url)
    ports = [free_port(), free_port()]
    setup = asyncio.run(run_setup(settings, webhook_url=None))
    env = {
        **settings_env(settings),
        "STRIPE_PRICE_ID": setup.price_id,
        "TRUSTED_PROXIES": "127.0.0.1",
        "RATE_LIMIT_PER_MINUTE": str(IP_LIMIT),
        "GLOBAL_RATE_LIMIT_MULTIPLIER": "1",
        "RATE_LIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
        "LOG_LEVEL": "info",
    }
    started = [GatewayProcess(env, tmp_path / f"gateway-{i}.log", p) for i, p in enumerate(ports)]
    try:
        yield [gateway.wait_until_up() for gateway in started]
    finally:
        for gateway in started:
            gateway.stop()


def nginx_config(
    gateways: list[GatewayProcess], cert: Path, key: Path, ports: dict[str, int]
) -> str:
    """deploy/nginx.conf with this test's addresses, inside a main context of its own."""
    lines = (ROOT / "deploy" / "nginx.conf").read_text().splitlines()
    site = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    site = site.replace("gateway-1:3000", f"127.0.0.1:{gateways[0].port}")
    site = site.replace("gateway-2:3000", f"127.0.0.1:{gateways[1].port}")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{ports['http']};")
    site = site.replace("listen 443 ssl", f"listen 127.0.0.1:{ports['https']} ssl")
    site = site.replace("/etc/nginx/certs/fullchain.pem", str(cert))
    site = site.replace("/etc/nginx/certs/privkey.pem", str(key))
    assert "gateway-" not in site and "/etc/nginx" not in site
    return f"""
user root;
worker_processes 1;
pid nginx.pid;
error_log error.log info;
events {{ worker_connections 256; }}
http {{
    access_log access.log;
    client_body_temp_path body;
    proxy_temp_path proxy;
    fastcgi_temp_path fastcgi;
    uwsgi_temp_path uwsgi;
    scgi_temp_path scgi;
    {site}
}}
"""


@pytest.fixture
def nginx(
    gateways: list[GatewayProcess], certificate: tuple[Path, Path], tmp_path: Path
) -> Iterator[dict[str, int]]:
    binary = _need("nginx")
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    ports = {"http": free_port(), "https": free_port()}
    (prefix / "nginx.conf").write_text(nginx_config(gateways, *certificate, ports))
    with (prefix / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_for(lambda: _answers(ports["https"], certificate[0]), seconds=30)
            yield ports
        finally:
            process.terminate()
            process.wait(timeout=30)


def _answers(port: int, cert: Path) -> bool:
    try:
        trust = ssl.create_default_context(cafile=cert)
        return httpx.get(f"https://localhost:{port}/health/live", verify=trust).is_success
    except httpx.HTTPError:
        return False


def _client(address: str, port: int, cert: Path) -> httpx.Client:
    """A client whose connections come from `address` (any 127.0.0.0/8 address is local)."""
    trust = ssl.create_default_context(cafile=cert)
    transport = httpx.HTTPTransport(local_address=address, verify=trust)
    return httpx.Client(transport=transport, base_url=f"https://localhost:{port}", timeout=30)


def _register(client: httpx.Client, email: str) -> str:
    reply = client.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "name": "Ada"}
    )
    assert reply.status_code == 201, reply.text
    key: str = reply.json()["apiKey"]["key"]
    return key


@pytest.mark.parametrize("backend", ["postgres"])
def test_per_client_ip_limits_hold_through_nginx_and_two_gateways(
    gateways: list[GatewayProcess], nginx: dict[str, int], certificate: tuple[Path, Path]
) -> None:
    cert = certificate[0]
    plain = httpx.get(f"http://localhost:{nginx['http']}/health", follow_redirects=False)
    assert plain.status_code == 308
    assert plain.headers["location"] == "https://localhost/health"

    with (
        _client("127.0.0.2", nginx["https"], cert) as mallory,
        _client("127.0.0.3", nginx["https"], cert) as ada,
    ):
        first_key = _register(ada, "first@example.com")
        second_key = _register(ada, "second@example.com")
        # One client, a new X-Forwarded-For on every call: nginx appends the real address,
        # and the gateways read from the right, so every call counts against 127.0.0.2.
        answers = [
            mallory.get(
                "/api/v1/insights",
                headers={"X-API-Key": first_key, "X-Forwarded-For": f"198.51.100.{i}"},
            ).status_code
            for i in range(IP_LIMIT)
        ]
        assert answers == [200] * IP_LIMIT
        # Another account from the same address: refused by the client-IP limit.
        refused = mallory.get("/api/v1/insights", headers={"X-API-Key": second_key})
        assert refused.status_code == 429
        assert refused.json()["error"] == "Rate Limit Exceeded"
        # The same account from another address is served: the limit is per client, not per nginx.
        assert ada.get("/api/v1/insights", headers={"X-API-Key": second_key}).status_code == 200

    # nginx spread the calls over both gateways, which shared the counters through Redis.
    served = [
        len(re.findall(r"GET /api/v1/insights 200", g.log_path.read_text())) for g in gateways
    ]
    assert sum(served) == IP_LIMIT + 1
    assert all(count > 0 for count in served)
