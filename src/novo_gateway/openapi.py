"""The OpenAPI document, made truthful: validation errors are 400s in the common error shape,
and each operation declares the credentials it needs."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from novo_gateway.kit.errors import ErrorBody

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}

# How each path is authenticated (accounts/deps.py, gateway/pipeline.py): so clients, and
# fuzzers checking that a missing or wrong credential is refused, know which operations need one.
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "ApiKeyBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (nk_...) as `Authorization: Bearer`.",
    },
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "ApiKeyQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "api_key",
        "description": "Redacted from every log line; a header is safer.",
    },
    "SessionToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A session token (ns_...) from `POST /auth/login`.",
    },
}
_API_KEY: list[dict[str, list[str]]] = [
    {"ApiKeyBearer": []},
    {"ApiKeyHeader": []},
    {"ApiKeyQuery": []},
]
_PUBLIC = frozenset(
    {
        "/health",
        "/health/live",
        "/health/ready",
        "/auth/register",
        "/auth/login",
        "/auth/password-reset",
        "/auth/password-reset/confirm",
        "/webhooks/stripe",
        "/api/v1/health",
    }
)


# Metered calls take an Idempotency-Key (gateway/idempotency.py; README "Idempotency-Key").
IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Names this request for 24 hours: a retry with the same key and the same method, path, "
        "query and body gets the first answer again (`Idempotent-Replayed: true`) and is not "
        "billed again; the key with another request is 422; a retry while the first runs "
        "waits for its answer, else 409."
    ),
    # gateway/idempotency.py's KEY_PATTERN: printable ASCII, no space at either end.
    "schema": {"type": "string", "pattern": "^[!-~]([ -~]{0,253}[!-~])?$"},
}


def security_of(path: str) -> list[dict[str, list[str]]]:
    """The credentials an operation on `path` accepts (none for the public ones)."""
    if path in _PUBLIC:
        return []
    if path == "/auth/logout":
        return [{"SessionToken": []}]
    if path.startswith("/api/v1/"):
        return _API_KEY
    return [*_API_KEY, {"SessionToken": []}]


def install_openapi(app: FastAPI) -> None:
    """Replace FastAPI's automatic 422 responses with the 400 the error handlers really send."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                operation["security"] = security_of(path)
                responses = operation.get("responses", {})
                if path.startswith("/api/v1/") and operation["security"]:
                    operation.setdefault("parameters", []).append(IDEMPOTENCY_KEY)
                if responses.get("422", {}).get("description") == "Validation Error":
                    del responses["422"]
                    responses.setdefault(
                        "400",
                        {
                            "description": "Bad Request",
                            "content": {"application/json": {"schema": _ERROR_REF}},
                        },
                    )
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components.setdefault("ErrorBody", ErrorBody.model_json_schema())
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
