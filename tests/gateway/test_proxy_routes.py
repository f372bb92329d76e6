"""The route table: the routes file, its errors, and which path goes where."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from novo_gateway.app import create_app
from novo_gateway.gateway.proxy import UpstreamProxy
from novo_gateway.gateway.routes_table import Route, RoutesFileError, RouteTable, load_routes
from tests.conftest import make_test_settings

SEARCH = "http://search.internal:8080"


def _write(tmp_path: Path, text: str, name: str = "routes.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_routes_file_is_loaded_with_every_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""
[[routes]]
prefix = "/api/v1/search/"
upstream = "{SEARCH}/v2"
units = 3
timeout_seconds = 2.5
strip_prefix = true

[[routes]]
prefix = "/api/v1/images"
upstream = "https://images.internal"
""",
    )
    search, images = load_routes(path)
    assert search == Route(
        prefix="/api/v1/search",
        upstream=httpx.URL(f"{SEARCH}/v2"),
        units=3,
        timeout_seconds=2.5,
        strip_prefix=True,
    )
    assert (images.units, images.timeout_seconds, images.strip_prefix) == (1, None, False)
    assert (images.forward_headers, images.security_headers) == (frozenset(), True)
    assert images.content_security_policy == "sandbox"


def test_header_and_security_fields_are_loaded(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""
[[routes]]
prefix = "/api/v1/a"
upstream = "{SEARCH}"
forward_headers = ["X_Tenant", "X-Real-IP"]
content_security_policy = "sandbox allow-scripts"

[[routes]]
prefix = "/api/v1/b"
upstream = "{SEARCH}"
security_headers = false
""",
    )
    first, second = load_routes(path)
    assert first.forward_headers == frozenset({"x_tenant", "x-real-ip"})
    assert (first.security_headers, first.content_security_policy) == (
        True,
        "sandbox allow-scripts",
    )
    assert second.security_headers is False


def test_json_routes_file_is_loaded(tmp_path: Path) -> None:
    data = {"routes": [{"prefix": "/api/v1/search", "upstream": SEARCH, "units": 2}]}
    path = _write(tmp_path, json.dumps(data), name="routes.json")
    (route,) = load_routes(path)
    assert (route.prefix, route.units) == ("/api/v1/search", 2)


def test_upstream_url_is_the_default_upstream_of_a_route(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[routes]]\nprefix = "/api/v1/search"\n')
    (route,) = load_routes(path, default_upstream=SEARCH)
    assert route.upstream == httpx.URL(SEARCH)


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("routes = 1", "routes", "valid list"),
        ("[other]\nx = 1", "routes", "Field required"),
        (f'[[routes]]\nupstream = "{SEARCH}"', "routes[0].prefix", "Field required"),
        (f'[[routes]]\nprefix = "/search"\nupstream = "{SEARCH}"', "routes[0].prefix", "/api/v1"),
        (
            f'[[routes]]\nprefix = "/api/v1/health"\nupstream = "{SEARCH}"',
            "routes[0].prefix",
            "health",
        ),
        (
            f'[[routes]]\nprefix = "/api/v1/a/../b"\nupstream = "{SEARCH}"',
            "routes[0].prefix",
            "plain path",
        ),
        ('[[routes]]\nprefix = "/api/v1/a"\nupstream = "ftp://x"', "routes[0].upstream", "http"),
        (
            '[[routes]]\nprefix = "/api/v1/a"\nupstream = "http://h/?q=1"',
            "routes[0].upstream",
            "query",
        ),
        (
            f'[[routes]]\nprefix = "/api/v1/a"\nupstream = "{SEARCH}"\nunits = 0',
            "routes[0].units",
            "greater than or equal to 1",
        ),
        (
            f'[[routes]]\nprefix = "/api/v1/a"\nupstream = "{SEARCH}"\nunits = "two"',
            "routes[0].units",
            "integer",
        ),
        (
            f'[[routes]]\nprefix = "/api/v1/a"\nupstream = "{SEARCH}"\ntimeout_seconds = -1',
            "routes[0].timeout_seconds",
            "greater than 0",
        ),
        (
            f'[[routes]]\nprefix = "/api/v1/a"\nupstream = "{SEARCH}"\nweight = 2',
            "routes[0].weight",
            "Extra inputs",
        ),
        (
            f'[[routes]]\nprefix = "/api/v1/a"\nupstream = "{SEARCH}"\n'
            f'[[routes]]\nprefix = "/api/v1/a/"\nupstream = "{SEARCH}"',
            "routes[1].prefix",
            "already routed by routes[0]",
        ),
        ('[[routes]]\nprefix = "/api/v1/a"', "routes[0].upstream", "UPSTREAM_URL"),
        *(
            (
                f'[[routes]]\nprefix = "/api/v1/a"\nupstream = "{SEARCH}"\n'
                f'forward_headers = ["{name}"]',
                "routes[0].forward_headers",
                "never forwarded from the client",
            )
            for name in (
                "X_Novo_Account_Id",
                "x-forwarded-for",
                "Authorization",
                "X_API_KEY",
                "Cookie",
                "Connection",
                "Host",
                "X-Novo-Anything",
            )
        ),
        (
            f'[[routes]]\nprefix = "/api/v1/a"\nupstream = "{SEARCH}"\n'
            'forward_headers = ["X Tenant"]',
            "routes[0].forward_headers",
            "not a header name",
        ),
        (
            f'[[routes]]\nprefix = "/api/v1/a"\nupstream = "{SEARCH}"\n'
            'content_security_policy = "sandbox\\r\\nSet-Cookie: x=1"',
            "routes[0].content_security_policy",
            "printable ASCII",
        ),
        (
            f'[[routes]]\nprefix = "/api/v1/a"\nupstream = "{SEARCH}"\n'
            'security_headers = false\ncontent_security_policy = "sandbox"',
            "routes[0]",
            "no effect with security_headers = false",
        ),
    ],
)
def test_invalid_route_names_the_file_and_field(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(RoutesFileError) as caught:
        load_routes(path)
    message = str(caught.value)
    assert message.startswith(f"Routes file {path}: {field}: ")
    assert reason in message


def test_unparsable_toml_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[[routes]\nprefix = ")
    with pytest.raises(RoutesFileError, match="not valid TOML"):
        load_routes(path)


def test_unparsable_json_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "{routes: []}", name="routes.json")
    with pytest.raises(RoutesFileError, match=r"routes\.json: not valid JSON"):
        load_routes(path)


def test_missing_routes_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(RoutesFileError, match=r"missing\.toml: cannot be read"):
        load_routes(tmp_path / "missing.toml")


def test_invalid_upstream_url_setting_is_refused() -> None:
    with pytest.raises(RoutesFileError, match="UPSTREAM_URL"):
        RouteTable.from_settings(make_test_settings(upstream_url="not a url"))


def test_gateway_does_not_start_with_an_invalid_routes_file(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[routes]]\nprefix = "/elsewhere"\nupstream = "http://h"')
    settings = make_test_settings(routes_file=path, database_path=tmp_path / "gateway.db")
    with pytest.raises(RoutesFileError, match=r"routes\[0\]\.prefix"):
        create_app(settings)


# --- matching -------------------------------------------------------------------------------


def _route(prefix: str) -> Route:
    return Route(prefix=prefix, upstream=httpx.URL(SEARCH))


def test_longest_prefix_wins_on_whole_segments() -> None:
    table = RouteTable([_route("/api/v1/search"), _route("/api/v1/search/images")])
    assert table.match("/api/v1/search") == _route("/api/v1/search")
    assert table.match("/api/v1/search/") == _route("/api/v1/search")
    assert table.match("/api/v1/search/text/x") == _route("/api/v1/search")
    assert table.match("/api/v1/search/images/1") == _route("/api/v1/search/images")
    assert table.match("/api/v1/searches") is None


def test_routes_file_route_takes_a_builtin_path() -> None:
    table = RouteTable([_route("/api/v1/insights")])
    assert table.match("/api/v1/insights") == _route("/api/v1/insights")
    assert table.match("/api/v1/analytics") is None


def test_catch_all_leaves_builtin_endpoints_to_the_gateway() -> None:
    proxy = UpstreamProxy(make_test_settings(upstream_url=SEARCH))
    assert proxy.match("/api/v1/insights") is None
    assert proxy.match("/api/v1/insights/") is None
    assert proxy.match("/api/v1/bulk/process") is None
    route = proxy.match("/api/v1/recommendations/7")
    assert route is not None
    assert (route.upstream, route.units) == (httpx.URL(SEARCH), 1)


def test_health_and_paths_outside_the_api_are_never_proxied() -> None:
    table = RouteTable([_route("/api/v1")], catch_all=_route("/api/v1"))
    assert table.match("/api/v1/health") is None
    assert table.match("/auth/login") is None
    assert table.match("/api/v12/x") is None
    assert table.match("/api/v1/anything") == _route("/api/v1")


def test_without_upstream_settings_nothing_is_proxied() -> None:
    proxy = UpstreamProxy(make_test_settings())
    assert not proxy.table
    assert proxy.match("/api/v1/recommendations") is None


def test_a_very_deep_path_is_matched_from_the_deepest_useful_prefix() -> None:
    table = RouteTable([_route("/api/v1/search")])
    assert table.match("/api/v1/search" + "/x" * 10_000) == _route("/api/v1/search")
    assert table.match("/api/v1/other" + "/x" * 10_000) is None
