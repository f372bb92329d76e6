"""The one error shape, for paths and bodies the gateway does not know."""

from __future__ import annotations

from tests.conftest import AppClient


async def test_unknown_path_is_404_in_the_common_shape(client: AppClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {
        "error": "Not Found",
        "message": "The endpoint GET /nope does not exist",
    }


async def test_response_carries_a_request_id(client: AppClient) -> None:
    response = await client.get("/nope")
    assert len(response.headers["x-request-id"]) == 32
