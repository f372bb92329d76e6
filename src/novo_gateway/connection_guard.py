"""Slow and greedy clients, bounded where the HTTP server reads the socket.

uvicorn (0.54) has `limit_concurrency` (a cap on one worker's connections and requests, answered
503) and `timeout_keep_alive` (idle time between two requests), but no deadline for reading a
request: a client that opens a connection and sends nothing, sends half its headers, or trickles
its body holds the connection, a file descriptor and the body's memory for as long as it likes.
The ASGI app cannot help: it is called only once the headers are complete. So `serve` runs
uvicorn's own httptools protocol with three additions (per worker process):

* **header deadline** (HEADER_TIMEOUT_SECONDS): from the connection's first byte (or from the
  first byte of the next request on a kept-alive connection) to the end of the headers;
* **body deadline** (BODY_TIMEOUT_SECONDS): from the end of the headers to the end of the body,
  in total (a body trickled a byte at a time does not reset it);
* **connections per client IP** (MAX_CONNECTIONS_PER_IP): the peer address, except addresses in
  TRUSTED_PROXIES (a reverse proxy carries many clients; bound them there, see the README).

A request past a deadline is answered 408 in the common error shape (when no response has
started) and its connection closed; a connection that sent nothing is closed without an answer.
A connection over the per-IP cap is answered 429 and closed before anything is read. Behind
nginx, its `client_header_timeout` and `client_body_timeout` do the same job first.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

from prometheus_client import Counter
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from novo_gateway.kit.config import Settings
from novo_gateway.kit.errors import GatewayError, RequestTimeout, Throttled

# Set in a request's scope state when the guard cut it off: the status the client was sent.
CUT_OFF: Final = "novo_cut_off_status"

REFUSED_CONNECTIONS: Final = Counter(
    "novo_connections_refused_total",
    "Connections closed by the server before a request was served: idle_timeout (nothing "
    "sent), header_timeout, body_timeout or per_ip_limit.",
    ["reason"],
)


@dataclass(frozen=True)
class ConnectionLimits:
    """The deadlines and the per-IP cap (one worker process applies them to its connections)."""

    header_timeout: float
    body_timeout: float
    max_per_ip: int
    exempt: tuple[str, ...] = ()  # IPs and CIDRs of trusted reverse proxies
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        networks = tuple(ipaddress.ip_network(entry, strict=False) for entry in self.exempt)
        object.__setattr__(self, "_networks", networks)

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            max_per_ip=settings.max_connections_per_ip,
            exempt=tuple(settings.trusted_proxies),
        )

    def counts(self, peer: str) -> bool:
        """True when connections from `peer` count against the per-IP cap."""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False  # a Unix socket: no client address to count
        return not any(address in network for network in self._networks)


# Open connections per client IP, in this worker process (uvicorn runs one event loop each).
_open_by_ip: Tally[str] = Tally()


def open_connections(peer: str) -> int:
    """How many connections `peer` holds open in this process."""
    return _open_by_ip[peer]


def _response(err: GatewayError) -> bytes:
    body = json.dumps(err.body()).encode()
    head = [
        STATUS_LINE[err.status_code],
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n",
        *(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in err.headers.items()),
        b"\r\n",
    ]
    return b"".join(head) + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a per-IP cap."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits
        self._deadline: asyncio.TimerHandle | None = None
        self._counted_peer: str | None = None
        self._in_headers = False  # a request's first byte came, its headers are not complete

    # -- connection ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = self.client[0] if self.client else None
        if peer is not None and self._limits.counts(peer):
            self._counted_peer = peer
            _open_by_ip[peer] += 1
            if _open_by_ip[peer] > self._limits.max_per_ip:
                self._refuse("per_ip_limit", _too_many_connections(self._limits.max_per_ip))
                return
        self._arm(self._limits.header_timeout, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        peer, self._counted_peer = self._counted_peer, None
        if peer is not None:
            _open_by_ip[peer] -= 1
            if _open_by_ip[peer] <= 0:
                del _open_by_ip[peer]
        super().connection_lost(exc)

    # -- parser callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm(self._limits.header_timeout, self._header_timed_out)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_headers = False
        super().on_headers_complete()
        if not self.parser.should_upgrade():
            self._arm(self._limits.body_timeout, self._body_timed_out)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # -- deadlines ---------------------------------------------------------------------------
    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _header_timed_out(self) -> None:
        self._deadline = None
        seconds = self._limits.header_timeout
        cycle = self.cycle  # a previous request's, when this one came on a kept-alive connection
        # A connection that sent nothing (a browser's preconnect, or an attacker's) is closed
        # without an answer, as nginx does: a browser would take a 408 for its next request's.
        self._refuse(
            "header_timeout" if self._in_headers else "idle_timeout",
            RequestTimeout(
                f"The request headers did not arrive within {seconds:g}s. "
                "Send the whole request at once."
            ),
            answer=self._in_headers and (cycle is None or cycle.response_complete),
        )

    def _body_timed_out(self) -> None:
        self._deadline = None
        seconds = self._limits.body_timeout
        cycle = self.cycle
        self._refuse(
            "body_timeout",
            RequestTimeout(
                f"The request body did not arrive within {seconds:g}s. "
                "Send the whole request at once."
            ),
            answer=cycle is not None and not cycle.response_started,
        )

    def _refuse(self, reason: str, err: GatewayError, *, answer: bool = True) -> None:
        """Answer `err` (when no response to this request has begun), then close the
        connection; an app still reading the request sees a disconnect."""
        if self.transport.is_closing():
            return
        REFUSED_CONNECTIONS.labels(reason).inc()
        cycle = self.cycle
        if answer:
            self.transport.write(_response(err))
        if cycle is not None and not cycle.response_complete:
            # The app's next receive() says http.disconnect and its send() does nothing; the
            # mark lets it log the request as the 408 the client got (error_handlers.py).
            cycle.scope.setdefault("state", {})[CUT_OFF] = err.status_code
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


def _too_many_connections(limit: int) -> Throttled:
    return Throttled(
        f"Too many open connections from your address (at most {limit}). "
        "Reuse a connection, or close idle ones.",
        headers={"Retry-After": "1"},
    )


def guarded_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """The protocol factory to give uvicorn as `http=` (picklable, for worker processes)."""
    factory = functools.partial(
        GuardedHttpToolsProtocol, limits=ConnectionLimits.from_settings(settings)
    )
    # uvicorn calls `http` with (config=, server_state=, app_state=, _loop=) to make a protocol,
    # which a partial does as well as a class; its annotation names only classes.
    return cast(type[asyncio.Protocol], factory)
