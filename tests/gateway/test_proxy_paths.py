"""The path checks of the proxy as functions: dot segments in any spelling, and the raw prefix
split (the same cases through real servers are in test_proxy_forwarding.py)."""

from __future__ import annotations

import pytest

from novo_gateway.gateway.paths import has_dot_segment, strip_prefix
from novo_gateway.kit.credentials import without_api_key


@pytest.mark.parametrize(
    "raw",
    [
        "/a/．．/b".encode(),  # fullwidth stops, raw UTF-8: NFKC reads them as '..'
        "/a/\u2025/b".encode(),  # TWO DOT LEADER, NFKC '..'
        b"/a/%EF%BC%8E/b",
        b"/a/%e2%80%a5/b",
        b"/a/%U002E%u002E/b",
        b"/a/%e0%80%ae%e0%80%ae/b",
        b"/a/\t..\t/b",
        b"/a/..%09/b",
        b"/a/..%3Fx/b",
        b"/a/.. ./b".replace(b" ", b"%20"),  # Windows drops trailing dots and spaces
        b"/a/%2525252e%2525252e/b",  # still encoded after three decodings
        b"/a/..",
        b".",
    ],
)
def test_a_dot_segment_is_found_in_any_spelling(raw: bytes) -> None:
    assert has_dot_segment(raw)


@pytest.mark.parametrize(
    "raw",
    [b"/a/b", b"/a/..b/c..", b"/a/v1.2", b"/a/%2e%2ea", b"/a/100%25", b"/a/%zz", "/a/é".encode()],
)
def test_paths_without_a_dot_segment_pass(raw: bytes) -> None:
    assert not has_dot_segment(raw)


@pytest.mark.parametrize(
    ("raw", "rest"),
    [
        (b"/api/v1/s/x%3Fa=1", b"/x%3Fa=1"),
        (b"/api/v1/%73/x%20y", b"/x%20y"),
        (b"/api%2Fv1/s/x", b"/x"),
        (b"/api/v1/s", b"/"),
        (b"/api/v1/s/", b"/"),
        (b"/api/v1/s%2Fx", None),
        (b"/api/v1/sx", None),
    ],
)
def test_a_prefix_is_stripped_from_the_raw_path_on_decoded_segments(
    raw: bytes, rest: bytes | None
) -> None:
    assert strip_prefix(raw, "/api/v1/s") == rest


def test_the_key_is_removed_from_the_query_in_any_spelling_the_rest_kept_as_sent() -> None:
    query = b"a=%20&API_KEY=1&api%5fkey=2&Api_Key+=3&b&&c=1;api_key=4;d=2&api%255Fkey=5;;e"
    assert without_api_key(query) == b"a=%20&b&&c=1;d=2&api%255Fkey=5;;e"
