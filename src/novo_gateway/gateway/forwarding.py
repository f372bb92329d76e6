"""What the proxy sends an upstream and what it passes back: the one place that decides both.

Request (`outgoing`):

* the path is the client's raw path (ASGI `raw_path`) byte for byte, minus the route's prefix
  when it strips it (paths.py), after the upstream URL's own path; the query is the client's
  raw query minus every `api_key` parameter (any case, percent-encoded or not, `&`- or
  `;`-separated: kit/credentials.py);
* headers pass by name. A name is forwarded only when it is an ordinary one: letters, digits
  and `-` (no `_`: WSGI servers and CGI map `X_Novo_Account_Id` and `X-Novo-Account-Id` to the
  same variable, which is how a client could impersonate another account; nginx drops such
  names by default too), and not reserved. Reserved, compared with `_` and `-` alike and case
  folded: hop-by-hop headers (RFC 9110 §7.6.1) and the names the Connection header lists; what
  the gateway sets itself (`X-Novo-*`, `X-Request-Id`, `X-Forwarded-*`, Host); credentials
  (`Authorization`, `X-API-Key`); and proxy or identity headers an upstream may believe
  (`Forwarded`, `X-Real-IP`, `True-Client-IP`, `X-Original-URL`, `X-HTTP-Method-Override`, ...,
  `IDENTITY_HEADERS`). A route's `forward_headers` lets named extra headers through (an
  underscore name, an identity header the upstream needs), never a reserved one of the first
  three kinds. From `Cookie`, the gateway's own cookies (`novo_*`) are removed, the rest kept;
* then the gateway's own: `X-Novo-Account-Id`, `X-Request-Id`, `X-Forwarded-Proto/Host`, and
  `X-Forwarded-For` naming one address, the client as the gateway resolved it (client_ip.py:
  the peer, or what TRUSTED_PROXIES forwarded), so an upstream reading either end of it gets
  the same client and never an address the client wrote itself.

Response (`incoming_headers`): hop-by-hop headers, the upstream's Date, Server and
X-Request-Id, and any `Set-Cookie` for a `novo_*` cookie (an upstream must not set or clear the
dashboards' session) are dropped. Unless the route opts out (`security_headers = false`),
`Content-Security-Policy: sandbox` (or the route's own policy) and `X-Content-Type-Options:
nosniff` are added: a proxied page then runs in an opaque origin, so its script can neither
read the dashboards on this origin nor use their cookies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Final, Protocol

from starlette.types import Scope

from novo_gateway.gateway.paths import raw_path, strip_prefix
from novo_gateway.kit.credentials import without_api_key

if TYPE_CHECKING:
    from novo_gateway.keys.cache import KeyIdentity

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Names the gateway writes itself, or must not pass on (the client wrote the Host of the
# gateway; Expect was answered by the gateway's server), and the client's credentials.
GATEWAY_HEADERS: Final = frozenset(
    {"host", "expect", "x-request-id", "authorization", "x-api-key", "cookie2"}
)
GATEWAY_PREFIXES: Final = ("x-novo-", "x-forwarded-")
# Headers naming the client, the URL or the method that upstream frameworks and servers believe.
IDENTITY_HEADERS: Final = frozenset(
    {
        "forwarded",
        "x-forwarded",
        "via",
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
        "client-ip",
        "cf-connecting-ip",
        "cf-connecting-ipv6",
        "fastly-client-ip",
        "akamai-client-ip",
        "x-cluster-client-ip",
        "x-originating-ip",
        "x-remote-ip",
        "x-remote-addr",
        "x-proxyuser-ip",
        "x-host",
        "x-http-host-override",
        "x-rewrite-url",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        # the scheme, as TLS-terminating proxies tell it
        "x-scheme",
        "x-url-scheme",
        "front-end-https",
        # client certificates and signed-in users, as mTLS and auth proxies tell them
        "ssl-client-cert",
        "x-ssl-client-cert",
        "x-client-cert",
        "x-ssl-client-verify",
        "x-client-verify",
        "x-ssl-client-dn",
        "remote-user",
        "x-remote-user",
        "x-auth-user",
        "x-webauth-user",
    }
)
IDENTITY_PREFIXES: Final = ("x-original-", "x-auth-request-")
SANDBOX: Final = "sandbox"
NOVO_COOKIE_PREFIX: Final = "novo_"
_ORDINARY: Final = re.compile(rb"^[A-Za-z0-9-]+$")
_DROP_RESPONSE: Final = HOP_BY_HOP | {"date", "server", "x-request-id"}
_NOSNIFF: Final = "x-content-type-options"


def header_key(name: str | bytes) -> str:
    """A header name as compared: case folded, `_` read as `-`."""
    text = name.decode("latin-1") if isinstance(name, bytes) else name
    return text.lower().replace("_", "-")


def is_gateway_header(name: str) -> bool:
    """True for names only the gateway may set or must never pass on (no allow-list opens them)."""
    key = header_key(name)
    return (
        key in HOP_BY_HOP
        or key in GATEWAY_HEADERS
        or key == "cookie"
        or key.startswith(GATEWAY_PREFIXES)
    )


class ForwardingRule(Protocol):
    """What forwarding reads of a route (routes_table.Route; that module imports this one for
    its header names, so the route is named here by what it offers)."""

    @property
    def prefix(self) -> str: ...
    @property
    def strip_prefix(self) -> bool: ...
    @property
    def forward_headers(self) -> frozenset[str]: ...
    @property
    def security_headers(self) -> bool: ...
    @property
    def content_security_policy(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Outgoing:
    """The request line's target (path and query, raw) and the headers for the upstream."""

    target: bytes
    headers: list[tuple[str, str]]


def outgoing(
    route: ForwardingRule,
    scope: Scope,
    query: bytes,
    identity: KeyIdentity,
    request_id: str | None,
    base_path: bytes,
    client_ip: str,
) -> Outgoing | None:
    """The request to send upstream: the client's raw path (after `base_path`) and `query` (as
    the client sent it), `client_ip` (as TRUSTED_PROXIES resolved it) in `X-Forwarded-For`;
    None when a stripped prefix cannot be split off the path."""
    path = raw_path(scope)
    if route.strip_prefix:
        rest = strip_prefix(path, route.prefix)
        if rest is None:
            return None
        path = rest
    target = base_path + path
    query = without_api_key(query)
    if query:
        target += b"?" + query
    return Outgoing(target, _request_headers(route, scope, identity, request_id, client_ip))


def _connection_tokens(value: bytes) -> set[str]:
    """The names a Connection header lists, beyond the hop-by-hop ones."""
    return {header_key(token.strip()) for token in value.split(b",")} - HOP_BY_HOP


class _Kind(IntEnum):
    """What a header name is, as far as forwarding goes (before a route's `forward_headers`)."""

    ORDINARY = 0  # forwarded
    RESERVED = 1  # never forwarded
    LISTABLE = 2  # forwarded only when the route lists it (identity headers, unusual names)


_KINDS: dict[bytes, _Kind] = {}  # the kind of each name seen, bounded by _MAX_KINDS
_MAX_KINDS: Final = 4096


def _kind(name: bytes) -> _Kind:
    kind = _KINDS.get(name)
    if kind is None:
        key = header_key(name)
        if is_gateway_header(key):
            kind = _Kind.RESERVED
        elif key in IDENTITY_HEADERS or key.startswith(IDENTITY_PREFIXES):
            kind = _Kind.LISTABLE
        else:
            kind = _Kind.ORDINARY if _ORDINARY.match(name) else _Kind.LISTABLE
        if len(_KINDS) < _MAX_KINDS:
            _KINDS[name] = kind
    return kind


def _request_headers(
    route: ForwardingRule,
    scope: Scope,
    identity: KeyIdentity,
    request_id: str | None,
    client_ip: str,
) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    host = b""
    listed: set[str] = set()
    accepts_encoding = False
    for name, value in scope["headers"]:
        kind = _KINDS.get(name)
        if kind is None:
            kind = _kind(name)
        if kind is _Kind.ORDINARY:
            if name == b"accept-encoding":
                accepts_encoding = True
            headers.append((name.decode("latin-1").lower(), _text(value)))
            continue
        lower = name.lower()
        if kind is _Kind.LISTABLE:
            if lower.decode("latin-1") in route.forward_headers:
                headers.append((lower.decode("latin-1"), _text(value)))
        elif lower == b"host":
            host = value
        elif lower == b"cookie":
            kept = _without_novo_cookies(value)
            if kept:
                headers.append(("cookie", _text(kept)))
        elif lower == b"connection":
            listed |= _connection_tokens(value)
    if listed:  # headers the Connection header names are hop-by-hop for this message
        headers = [(n, v) for n, v in headers if header_key(n) not in listed]
    if not accepts_encoding:
        # The upstream client would ask for gzip; the body is passed through undecoded, so ask
        # for what the client can read.
        headers.append(("accept-encoding", "identity"))
    headers += [
        ("x-novo-account-id", str(identity.user_id)),
        ("x-forwarded-for", client_ip),
        ("x-forwarded-proto", scope.get("scheme", "http")),
    ]
    if host:
        headers.append(("x-forwarded-host", _text(host)))
    if request_id:
        headers.append(("x-request-id", request_id))
    return headers


def _is_novo_cookie(name: bytes) -> bool:
    key = name.strip().decode("latin-1").lower()
    key = key.removeprefix("__host-").removeprefix("__secure-")
    return key.startswith(NOVO_COOKIE_PREFIX)


def _without_novo_cookies(value: bytes) -> bytes:
    """A Cookie header minus the gateway's own cookies, the others as sent."""
    pairs = [pair.strip() for pair in value.split(b";")]
    return b"; ".join(p for p in pairs if p and not _is_novo_cookie(p.split(b"=", 1)[0]))


def incoming_headers(
    route: ForwardingRule, upstream: tuple[tuple[bytes, bytes], ...]
) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers as the client gets them (module docstring)."""
    listed: set[str] = set()
    for name, value in upstream:
        if name.lower() == b"connection":
            listed |= _connection_tokens(value)
    secured = route.security_headers
    headers = []
    for name, value in upstream:
        key = header_key(name)
        if key in _DROP_RESPONSE or key in listed or (secured and key == _NOSNIFF):
            continue
        if key == "set-cookie" and _is_novo_cookie(value.split(b"=", 1)[0]):
            continue
        headers.append((name.lower(), value))
    if secured:
        # Added beside any policy of the upstream's own: a browser enforces every policy.
        policy = route.content_security_policy.encode("latin-1")
        headers += [(b"content-security-policy", policy), (b"x-content-type-options", b"nosniff")]
    return headers


def _text(value: bytes) -> str:
    """A header value as the text the upstream client writes back as UTF-8: the same bytes
    whenever they are ASCII or UTF-8 (obs-text that is not UTF-8 is sent as its UTF-8 form)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")
