"""Which address a request is limited by: X-Forwarded-For counts only from trusted proxies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from starlette.types import Scope

from novo_gateway.kit.client_ip import ClientIpResolver, parse_trusted_proxies
from tests.conftest import make_test_settings


def scope(peer: str, *forwarded: str) -> Scope:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return {"type": "http", "client": (peer, 4000), "headers": headers}


def test_peer_address_is_used_when_no_proxy_is_trusted() -> None:
    resolver = ClientIpResolver([])
    assert resolver.resolve(scope("203.0.113.7", "198.51.100.1")) == "203.0.113.7"


def test_forwarded_for_is_ignored_from_an_untrusted_peer() -> None:
    resolver = ClientIpResolver(["10.0.0.0/8"])
    assert resolver.resolve(scope("203.0.113.7", "198.51.100.1")) == "203.0.113.7"


def test_forwarded_for_is_used_from_a_trusted_peer() -> None:
    resolver = ClientIpResolver(["10.0.0.1"])
    assert resolver.resolve(scope("10.0.0.1", "198.51.100.1")) == "198.51.100.1"


def test_right_most_untrusted_address_wins_over_a_client_written_one() -> None:
    resolver = ClientIpResolver(["10.0.0.0/8"])
    request = scope("10.0.0.1", "1.2.3.4, 198.51.100.1, 10.0.0.2")
    assert resolver.resolve(request) == "198.51.100.1"


def test_several_forwarded_for_headers_are_read_in_order() -> None:
    resolver = ClientIpResolver(["10.0.0.0/8"])
    assert resolver.resolve(scope("10.0.0.1", "1.2.3.4", "198.51.100.1")) == "198.51.100.1"


def test_garbage_in_forwarded_for_stops_at_the_last_trusted_hop() -> None:
    resolver = ClientIpResolver(["10.0.0.0/8"])
    assert resolver.resolve(scope("10.0.0.1", "not-an-ip, 10.0.0.2")) == "10.0.0.2"


def test_trusted_peer_without_forwarded_for_is_the_client() -> None:
    resolver = ClientIpResolver(["10.0.0.0/8"])
    assert resolver.resolve(scope("10.0.0.1")) == "10.0.0.1"


def test_ipv6_proxies_and_clients_are_understood() -> None:
    resolver = ClientIpResolver(["2001:db8::/32"])
    assert resolver.resolve(scope("2001:db8::1", "2001:db9::5")) == "2001:db9::5"


def test_request_without_a_peer_has_an_unknown_client() -> None:
    assert ClientIpResolver([]).resolve({"type": "http", "headers": []}) == "unknown"


def test_bad_trusted_proxy_entry_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        parse_trusted_proxies(["10.0.0.0/8", "proxy.example"])


def test_bad_trusted_proxies_setting_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValidationError, match="trusted_proxies"):
        make_test_settings(trusted_proxies="10.0.0.0/8, proxy.example")
