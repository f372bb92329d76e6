"""The slow-client guard's settings: who is counted per IP, and what `serve` hands to uvicorn."""

from __future__ import annotations

import pickle

from novo_gateway.connection_guard import (
    ConnectionLimits,
    GuardedHttpToolsProtocol,
    guarded_protocol,
)
from tests.conftest import make_test_settings


def test_trusted_proxies_are_not_capped_per_ip_and_clients_are() -> None:
    limits = ConnectionLimits(
        header_timeout=10, body_timeout=30, max_per_ip=2, exempt=("10.0.0.0/8", "::1")
    )

    assert limits.counts("203.0.113.7")
    assert limits.counts("127.0.0.1")
    assert not limits.counts("10.1.2.3")
    assert not limits.counts("::1")
    assert not limits.counts("")  # a Unix socket has no client address


def test_the_protocol_factory_survives_the_trip_to_a_worker_process() -> None:
    settings = make_test_settings(
        header_timeout_seconds=3,
        body_timeout_seconds=4,
        max_connections_per_ip=5,
        trusted_proxies="10.0.0.1",
    )
    # WORKERS > 1: uvicorn pickles its config, `http=` included, into each spawned worker.
    factory = pickle.loads(pickle.dumps(guarded_protocol(settings)))

    assert factory.func is GuardedHttpToolsProtocol
    limits = factory.keywords["limits"]
    assert (limits.header_timeout, limits.body_timeout, limits.max_per_ip) == (3, 4, 5)
    assert not limits.counts("10.0.0.1")
