"""What the proxy tests send: every spelling of a dot segment, and the headers a client may
spoof to name another client, URL or method (shared by tests/gateway and tests/adversarial)."""

from __future__ import annotations

# Every spelling of a dot segment the attacks tried (issue: "dot segments reach proxied
# upstreams"), and the ways servers behind a proxy are known to read one.
DOT_SEGMENT_CORPUS = [
    b"/api/v1/search/../admin",
    b"/api/v1/search/./admin",
    b"/api/v1/search/..",
    b"/api/v1/search/..;/admin",
    b"/api/v1/search/..;jsessionid=1/admin",
    b"/api/v1/search/.;/admin",
    b"/api/v1/search/..\\..\\admin",
    b"/api/v1/search\\..\\admin",
    b"/api/v1/search/%2e%2e/admin",
    b"/api/v1/search/%2E%2E/admin",
    b"/api/v1/search/%2e%2E;/admin",
    b"/api/v1/search/.%2e/admin",
    b"/api/v1/search/%2e./admin",
    b"/api/v1/search/..%3b/admin",
    b"/api/v1/search/..%3B/admin",
    b"/api/v1/search/..%5cadmin",
    b"/api/v1/search/..%5Cadmin",
    b"/api/v1/search/%2e%2e%5cadmin",
    b"/api/v1/search/..%2fadmin",
    b"/api/v1/search/%2e%2e%2Fadmin",
    b"/api/v1/search%2f..%2fadmin",
    b"/api/v1/search/%252e%252e/admin",
    b"/api/v1/search/%25252e%25252e%25252fadmin",
    b"/api/v1/search/%u002e%u002e/admin",
    b"/api/v1/search/%c0%ae%c0%ae/admin",
    b"/api/v1/search/%ef%bc%8e%ef%bc%8e/admin",
    b"/api/v1/search/..%00/admin",
    b"/api/v1/search/.. /admin".replace(b" ", b"%20"),
    b"/api/v1/search/...",
]

SPOOFED_HEADERS = [
    "X-Real-IP",
    "True-Client-IP",
    "X-Original-URL",
    "X-Original-Host",
    "X-Rewrite-URL",
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
    "Forwarded",
    "X-Client-IP",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-Cluster-Client-IP",
    "X_Real_IP",
    "X-Novo-Plan",
    "X_Request_Id",
    "X-Forwarded-Port",
    "X_Novo_Account_Id",
    "x-novo_account-id",
    "X-Remote-User",
    "X-Auth-Request-Email",
    "X-SSL-Client-Cert",
    "X-Url-Scheme",
]
