"""The fuzz corpus: hostile bodies, headers, query strings and path values that every route of
the gateway must answer with a 4xx (or its ordinary answer), never a 500 or a traceback.

Each case is what an attacker found or what a generator rarely reaches (schemathesis covers the
schema-shaped inputs in test_fuzz_api.py): nesting past the parser's recursion, numbers past
`int()`'s digit limit, malformed encodings, credentials in odd places, signatures Stripe would
never send. `tests/core/test_fuzz_corpus.py` sends every case to every route in-process;
`tests/adversarial/test_bad_input.py` sends it to a real `novo-gateway serve`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

JSON = (b"content-type", b"application/json")


@dataclass(frozen=True)
class Case:
    """One hostile request part: a body (with its headers), extra headers, a query string."""

    name: str
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    query: bytes = b""
    path_value: str | None = None  # replaces `{id}`-style path parameters when set
    tags: frozenset[str] = field(default_factory=frozenset)


def _json(name: str, body: bytes, *extra: tuple[bytes, bytes]) -> Case:
    return Case(name, body, (JSON, *extra))


CASES: tuple[Case, ...] = (
    # Nesting: Python's parser raised RecursionError (a 500) on the credential fallback.
    _json("deep-arrays", b"[" * 1500 + b"]" * 1500),
    _json("deep-objects", b'{"a":' * 1500 + b"1" + b"}" * 1500),
    _json("deep-arrays-20k", b"[" * 20_000 + b"]" * 20_000),
    _json("deep-in-credentials", b'{"email": ' + b"[" * 3000 + b"]" * 3000 + b', "password": "x"}'),
    _json("deep-unbalanced", b"[" * 5000),
    # Numbers and literals Python's json takes and others do not, or that overflow.
    _json("int-5000-digits", b'{"expiresInDays": ' + b"9" * 5000 + b', "days": 1}'),
    _json("nan-infinity", b'{"expiresInDays": NaN, "units": Infinity, "n": -Infinity}'),
    _json("float-overflow", b'{"expiresInDays": 1e999, "immediately": 1e-999}'),
    _json("negative-zero", b'{"expiresInDays": -0, "units": -0.0}'),
    # Encodings.
    _json("invalid-utf8", b'{"name": "\xff\xfe\xc0\xaf", "email": "\xed\xa0\x80@x.io"}'),
    _json("lone-surrogates", b'{"name": "\\ud800", "email": "\\udfff@example.com"}'),
    _json("bom", b'\xef\xbb\xbf{"name": "bom"}'),
    _json("nul-in-keys", b'{"na\\u0000me": "x", "\\u0000": 1}'),
    Case(
        "utf16-json",
        '{"name": "x"}'.encode("utf-16"),
        ((b"content-type", b"application/json; charset=utf-16"),),
    ),
    # Shapes.
    _json("empty", b""),
    _json("null", b"null"),
    _json("scalar", b'"just a string"'),
    _json("array-of-credentials", b'[{"email": "a@example.com", "password": "x"}]'),
    _json("duplicate-keys", b'{"email": "a@example.com", "email": 1, "password": "x"}'),
    _json(
        "wrong-types",
        b'{"email": 1, "password": [], "name": {}, "items": "x", "returnUrl": 5, '
        b'"expiresInDays": "soon", "expiresAt": [], "immediately": "yes", "channel": null}',
    ),
    _json("long-string", b'{"name": "' + b"a" * 300_000 + b'"}'),
    _json("many-keys", b"{" + b",".join(b'"k%d": %d' % (i, i) for i in range(20_000)) + b"}"),
    _json("truncated", b'{"email": "a@example.com", "pass'),
    _json("wrong-credentials", b'{"email": "nobody@example.com", "password": "not it"}'),
    # Bodies that are not JSON.
    Case(
        "form",
        b"email=a%40example.com&password=x&csrf=forged&name=%00",
        ((b"content-type", b"application/x-www-form-urlencoded"),),
    ),
    Case(
        "multipart-without-boundary",
        b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n",
        ((b"content-type", b"multipart/form-data"),),
    ),
    Case("text-plain-json", b'{"name": "x"}', ((b"content-type", b"text/plain"),)),
    Case("no-content-type", b'{"name": "x"}'),
    # Headers.
    Case("stripe-signature-superscript", headers=((b"stripe-signature", b"t=\xb2,v1=00"),)),
    Case("stripe-signature-5000-digits", headers=((b"stripe-signature", b"t=" + b"9" * 5000),)),
    Case("stripe-signature-empty-parts", headers=((b"stripe-signature", b",,=,t=,v1="),)),
    Case("bearer-latin1", headers=((b"authorization", b"Bearer \xff\xfe\xe9"),)),
    Case("bearer-session-garbage", headers=((b"authorization", b"Bearer ns_" + b"A" * 5000),)),
    Case("bearer-key-garbage", headers=((b"authorization", b"Bearer nk_" + b"0" * 38),)),
    Case("basic-auth", headers=((b"authorization", b"Basic YWRtaW46YWRtaW4="),)),
    Case("api-key-odd", headers=((b"x-api-key", b"nk_\xe2\x80\xae" + b"z" * 100),)),
    Case("idempotency-key-huge", headers=((b"idempotency-key", b"k" * 20_000),)),
    Case("idempotency-key-latin1", headers=((b"idempotency-key", b"\xff\xfe\x01"),)),
    Case(
        "forwarded-garbage",
        headers=(
            (b"x-forwarded-for", b", ".join([b"not-an-ip"] * 500)),
            (b"forwarded", b'for="[::1";proto=gopher'),
        ),
    ),
    Case(
        "cookies-forged",
        headers=((b"cookie", b"novo_session=ns_forged; novo_admin=forged; novo_sign_in=\xff"),),
    ),
    Case("origin-null", headers=((b"origin", b"null"), (b"referer", b"javascript:alert(1)"))),
    Case("request-id-odd", headers=((b"x-request-id", b"../../\xff" * 10),)),
    Case("accept-odd", headers=((b"accept", b"*/*;q=NaN, text/html;q=1e999"),)),
    # Query strings.
    Case(
        "query-numbers",
        query=b"days=1e309&period=9" + b"9" * 5000 + b"&limit=-1&status=bogus&page=%00",
    ),
    Case("query-encodings", query=b"api_key=%ff%fe&period=%00&returnUrl=%E2%80%AE&days=%F0"),
    Case("query-password", query=b"email=a%40example.com&password=x"),
    Case("query-many", query=b"&".join(b"p%d=%d" % (i, i) for i in range(2000))),
    # Path parameters.
    Case("path-negative", path_value="-1"),
    Case("path-huge", path_value="9" * 5000),
    Case("path-float", path_value="1e999"),
    Case("path-encoded", path_value="%00%2F..%2F"),
)
