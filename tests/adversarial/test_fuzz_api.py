"""Part 1: the live server's OpenAPI document, fuzzed by schemathesis with every check.

One gateway process (PostgreSQL, Redis, the Stripe emulator) is fuzzed over HTTP as two accounts
(peers: neither may see the other's objects). Every operation, every phase (examples, coverage,
fuzzing, stateful through the document's links and the links added here: register → key →
revoke), every check. The run must end with 0 failures: no 5xx, no response outside the declared
schema, no schema-valid request refused, no invalid one accepted, no auth ignored.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.adversarial.conftest import GatewayFactory
from tests.adversarial.harness import PYTHON, Gateway
from tests.adversarial.system import FIGURES_PATH, Account, Figures, register

FUZZ_DIR = Path(__file__).with_name("fuzz")
# The time the fuzzer may spend; the phases repeat until it is spent.
FUZZ_SECONDS = int(os.environ.get("NOVO_FUZZ_SECONDS", "40"))

# Links the document does not carry (auth is not a parameter): from a new key to its revocation,
# and from another account's registration to an attempt at revoking its key (must be 404).
LINKS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("/auth/api-keys", "post", "201"): {
        "RevokeCreatedKey": {
            "operationId": "revoke_api_key_auth_api_keys__id__delete",
            "parameters": {"path.id": "$response.body#/apiKey/id"},
        },
        "ListAfterCreate": {"operationId": "list_api_keys_auth_api_keys_get"},
    },
    ("/auth/register", "post", "201"): {
        "RevokeAnotherAccountsKey": {
            "operationId": "revoke_api_key_auth_api_keys__id__delete",
            "parameters": {"path.id": "$response.body#/apiKey/id"},
        },
    },
    ("/auth/api-keys/{id}", "delete", "200"): {
        "ListAfterRevoke": {"operationId": "list_api_keys_auth_api_keys_get"},
    },
}


@pytest.fixture(scope="module")
def fuzzed(factory: GatewayFactory, redis_server: Any) -> Iterator[Gateway]:
    gateway = factory.gateway(
        factory.database("postgres"),
        redis_url=redis_server.url,
        rate_limit_key_prefix="fuzz",
    )
    gateway.start()
    yield gateway
    gateway.stop()


def _document(gateway: Gateway) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()
    for (path, method, status), links in LINKS.items():
        document["paths"][path][method]["responses"][status]["links"] = links
    return document


async def test_every_operation_fuzzed_with_every_check_finds_no_failure(
    fuzzed: Gateway, tmp_path: Path, figures: Figures
) -> None:
    async with httpx.AsyncClient(base_url=fuzzed.url, timeout=30) as client:
        alice: Account = await register(client, "alice", name="Alice")
        bob: Account = await register(client, "bob", name="Bob")
    (tmp_path / "openapi.json").write_text(json.dumps(_document(fuzzed)))
    (tmp_path / "wfc.json").write_text(
        json.dumps(
            {
                "auth": [
                    {"name": a, "fixedHeaders": [{"name": "X-API-Key", "value": acc.key}]}
                    for a, acc in (("alice", alice), ("bob", bob))
                ]
            }
        )
    )
    config = (FUZZ_DIR / "schemathesis.toml").read_text()
    config = '[auth.wfc]\npath = "wfc.json"\npeers = ["alice", "bob"]\n\n' + config
    (tmp_path / "schemathesis.toml").write_text(config)
    report = tmp_path / "report.json"
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.adversarial.fuzz.hooks",
        "NOVO_FUZZ_PROTECTED_KEY_IDS": f"{alice.key_id},{bob.key_id}",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "NO_COLOR": "1",
    }
    run = subprocess.run(
        [
            str(Path(PYTHON).parent / "schemathesis"),
            "run",
            "openapi.json",
            "--url",
            fuzzed.url,
            "--checks",
            "all",
            "--max-time",
            str(FUZZ_SECONDS),
            "--workers",
            "2",
            "--seed",
            os.environ.get("NOVO_FUZZ_SEED", "20261126"),
            "--report",
            "json",
            "--report-json-path",
            str(report),
            "--request-timeout",
            "30",
            "--warnings",
            "off",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 240,
        check=False,
    )
    output = run.stdout + run.stderr
    kept = FIGURES_PATH.parent / "schemathesis.out"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(output)
    assert report.exists(), output[-5000:]
    summary = _summary(report, fuzzed)
    figures.add("fuzzing", **summary)

    assert run.returncode == 0, output[-12000:]
    assert summary["operations"] == summary["operations_in_document"]
    assert summary["server_errors"] == 0
    assert summary["failures"] == 0
    server_errors = [line for line in fuzzed.log_text().splitlines() if '"level": "error"' in line]
    assert server_errors == [], server_errors[:3]


def _summary(report: Path, gateway: Gateway) -> dict[str, Any]:
    """Operations, cases and failures from schemathesis's JSON report; 5xx from the access log."""
    data = json.loads(report.read_text())
    access = [line for line in gateway.log_text().splitlines() if "novo_gateway.access" in line]
    return {
        "operations": data["operations"]["tested"],
        "operations_in_document": data["operations"]["total"],
        "cases": data["test_cases"]["generated"],
        "failures": len(data["failures"]),
        "requests": len(access),
        "server_errors": sum(1 for line in access if re.search(r" 5\d\d [0-9.]+ms", line)),
        "phases": ",".join(p for p, v in data["phases"].items() if v["status"] == "success"),
        "seconds": round(data["running_time"]),
    }
