"""The client's IP: the direct peer, or `X-Forwarded-For` when the peer is a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN_CLIENT = "unknown"


def parse_trusted_proxies(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """TRUSTED_PROXIES entries (IPs or CIDRs) as networks; a bad entry raises ValueError."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR") from exc
    return tuple(networks)


class ClientIpResolver:
    """Finds the client address of a request.

    `X-Forwarded-For` is read only when the direct peer is trusted; it is then walked from the
    right (the hop nearest to us), skipping trusted proxies, and the first untrusted address is
    the client. Anything a client writes to the left of that is ignored, so it cannot pick its
    own rate-limit identity.
    """

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._trusted = parse_trusted_proxies(trusted_proxies)

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self._trusted)

    def resolve(self, scope: Scope) -> str:
        """The client IP of this request, as text."""
        peer = scope.get("client")
        if not peer:
            return UNKNOWN_CLIENT
        peer_host = str(peer[0])
        if not self._trusted:
            return peer_host
        client = _parse_ip(peer_host)
        if client is None or not self._is_trusted(client):
            return peer_host
        for hop in reversed(_forwarded_for(scope)):
            address = _parse_ip(hop)
            if address is None:
                break  # garbage from a client: keep the last address a trusted hop gave us
            client = address
            if not self._is_trusted(address):
                break
        return str(client)


def _parse_ip(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_for(scope: Scope) -> list[str]:
    hops: list[str] = []
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            hops.extend(part for part in value.decode("latin-1").split(",") if part.strip())
    return hops
