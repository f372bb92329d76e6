"""The OpenAPI document tells the truth about errors."""

from __future__ import annotations

from typing import Any

from tests.conftest import AppClient


async def _schema(client: AppClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


async def test_no_operation_declares_the_validation_422_the_gateway_never_sends(
    client: AppClient,
) -> None:
    schema = await _schema(client)
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/api/v1/") and path != "/api/v1/health":
                continue  # 422 is a misused Idempotency-Key there (the next test)
            assert "422" not in operation["responses"], f"{method.upper()} {path}"


async def test_metered_operations_declare_the_idempotency_key_and_its_errors(
    client: AppClient,
) -> None:
    schema = await _schema(client)
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/v1/") or path == "/api/v1/health":
            continue
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
            assert headers == ["Idempotency-Key"], where
            for status in ("409", "422"):
                content = operation["responses"][status]["content"]
                assert content["application/json"]["schema"] == error, where


async def test_operations_with_input_declare_400_in_the_error_shape(client: AppClient) -> None:
    schema = await _schema(client)
    register = schema["paths"]["/auth/register"]["post"]["responses"]
    body = register["400"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(schema["components"]["schemas"]["ErrorBody"]["required"]) == {"error", "message"}


async def test_a_validation_error_is_answered_as_declared(client: AppClient) -> None:
    response = await client.post("/auth/register", json={"email": "x"})
    assert response.status_code == 400
    assert set(response.json()) >= {"error", "message"}
