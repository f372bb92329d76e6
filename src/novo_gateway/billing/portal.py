"""Where the billing portal may send a customer back to: only origins we trust (no open redirect).

A `returnUrl` is accepted when it is an absolute http(s) URL whose origin (scheme, host, port)
is one of PORTAL_RETURN_ORIGINS, or by default the origin of PUBLIC_URL, or when that is unset,
`http://localhost:PORT` and `http://127.0.0.1:PORT`. Credentials in the URL, backslashes,
whitespace and control characters are refused, since browsers read those differently.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from novo_gateway.kit.config import Settings
from novo_gateway.kit.errors import BadRequest

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an absolute http(s) URL, normalised; None when unsafe."""
    if not url or len(url) > MAX_URL_LENGTH or "\\" in url:
        return None
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    shown_port = "" if port is None or port == _DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{shown_port}"


def allowed_origins(settings: Settings) -> list[str]:
    """The origins a portal session may return to, in the order of preference."""
    configured = settings.portal_return_origins or (
        [settings.public_url] if settings.public_url else []
    )
    origins = [o for o in (origin_of(url) for url in configured) if o is not None]
    if origins:
        return origins
    local = (f"http://localhost:{settings.port}", f"http://127.0.0.1:{settings.port}")
    return [o for o in (origin_of(url) for url in local) if o is not None]  # :80 is dropped


def checked_return_url(return_url: str | None, settings: Settings) -> str:
    """The URL to come back to: the one given when its origin is allowed, else a 400."""
    allowed = allowed_origins(settings)
    if return_url is None:
        return allowed[0] + "/"
    if origin_of(return_url) not in allowed:
        raise BadRequest(
            "returnUrl must be an http(s) URL on one of these origins: " + ", ".join(allowed) + ".",
            allowedOrigins=allowed,
        )
    return return_url
