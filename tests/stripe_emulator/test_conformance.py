"""Every endpoint the emulator serves refuses what Stripe refuses, by the SDK's own types.

The parameter schemas come from the pinned `stripe` SDK's generated `*Params` TypedDicts
(stripe_emulator/sdk_params.py); these tests walk the emulator's whole route table over real
HTTP, so a route added without that check, or a handler that skips it, fails here.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from stripe_emulator import sdk_params
from stripe_emulator.resources import build_router
from stripe_emulator.wire import Choice, Field, ListOf, Obj

from .helpers import API_KEY

ROUTES = [(r.method, r.template) for r in build_router().routes]


def _path(template: str) -> str:
    return template.replace("{id}", "x_missing_1")


def _send(
    http: httpx.Client, method: str, template: str, params: dict[str, Any], token: str
) -> httpx.Response:
    path = _path(template)
    v2 = path.startswith("/v2/")
    headers = {"Authorization": f"Bearer {token}"}
    if method == "GET" or method == "DELETE":
        return http.request(method, path, params=_flat(params), headers=headers)
    if v2:
        return http.post(path, json=params, headers=headers)
    return http.post(path, data=_flat(params), headers=headers)


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, dict):
            out.update(_flat(value, name))
        elif isinstance(value, list):
            out.update(_flat(dict(enumerate(value)), name))
        else:
            out[name] = str(value)
    return out


def _session_token(http: httpx.Client) -> str:
    response = http.post(
        "/v2/billing/meter_event_session", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    response.raise_for_status()
    return str(response.json()["authentication_token"])


def _token(http: httpx.Client, template: str) -> str:
    return _session_token(http) if template == "/v2/billing/meter_event_stream" else API_KEY


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert "error" in body, body
    error: dict[str, Any] = body["error"]
    return error


def _bad_enum(fields: dict[str, Field]) -> tuple[dict[str, Any], str, tuple[str, ...]] | None:
    """Parameters holding one value outside an enum (top level, in a list or one object
    down), the parameter's full name and the allowed values."""
    for name, field in fields.items():
        if isinstance(field, Choice) and field.choices != ("",):
            return {name: "zz_not_allowed"}, name, field.choices
        if isinstance(field, ListOf) and isinstance(field.item, Choice):
            return {name: ["zz_not_allowed"]}, f"{name}[0]", field.item.choices
        if isinstance(field, Obj):
            for child, sub in field.children.items():
                if isinstance(sub, Choice) and sub.choices != ("",):
                    return {name: {child: "zz_not_allowed"}}, f"{name}[{child}]", sub.choices
    return None


def test_every_route_has_the_sdk_parameter_types() -> None:
    missing = [r for r in ROUTES if sdk_params.schema_for(*r) is None]
    assert missing == []
    assert len(ROUTES) >= 70


@pytest.mark.parametrize(("method", "template"), ROUTES, ids=[f"{m} {t}" for m, t in ROUTES])
def test_unknown_parameter_is_refused_everywhere(url: str, method: str, template: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        response = _send(http, method, template, {"zz_unknown": "1"}, _token(http, template))
    assert response.status_code == 400, response.text
    error = _error(response)
    assert error["code"] == "parameter_unknown"
    assert error["message"] == "Received unknown parameter: zz_unknown"
    assert error["type"] == "invalid_request_error"


ENUM_ROUTES = [
    (m, t) for m, t in ROUTES if _bad_enum(sdk_params.schema_for(m, t) or {}) is not None
]


@pytest.mark.parametrize(
    ("method", "template"), ENUM_ROUTES, ids=[f"{m} {t}" for m, t in ENUM_ROUTES]
)
def test_value_outside_an_enum_is_refused_everywhere(url: str, method: str, template: str) -> None:
    found = _bad_enum(sdk_params.schema_for(method, template) or {})
    assert found is not None
    params, name, choices = found
    with httpx.Client(base_url=url, timeout=10) as http:
        response = _send(http, method, template, params, _token(http, template))
    assert response.status_code == 400, response.text
    error = _error(response)
    assert error["message"].startswith(f"Invalid {name}: must be one of ")
    assert "zz_not_allowed" not in error["message"]
    assert all(choice in error["message"] for choice in choices)
    if not template.startswith("/v2/"):
        assert error["param"] == name


def test_enum_routes_cover_the_billing_calls() -> None:
    assert ("POST", "/v1/webhook_endpoints") in ENUM_ROUTES
    assert ("POST", "/v1/billing/meters") in ENUM_ROUTES
    assert ("POST", "/v1/subscriptions") in ENUM_ROUTES
    assert ("POST", "/v2/core/event_destinations") in ENUM_ROUTES


def test_thin_event_type_is_refused_on_a_v1_webhook_endpoint(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.webhook_endpoints.create(
            {
                "url": "https://example.invalid/webhooks/stripe",
                "enabled_events": ["invoice.paid", "v1.billing.meter.error_report_triggered"],
            }
        )
    error = caught.value
    assert error.http_status == 400
    assert error.param == "enabled_events[1]"
    message = str(error.user_message)
    assert message.startswith("Invalid enabled_events[1]: must be one of *, account.")
    assert "invoice.paid" in message
    # Stripe lists the allowed values and does not repeat the refused one.
    assert "v1.billing.meter.error_report_triggered" not in message
    assert client.v1.webhook_endpoints.list().data == []


def test_stripe_parameters_the_emulator_does_not_model_say_so(
    client: stripe.StripeClient,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.create({"shipping": {"name": "x", "address": {"line1": "y"}}})
    assert caught.value.code == "parameter_unsupported"


def test_missing_required_parameter_nested_in_an_object(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.billing.meters.create(
            {"display_name": "x", "event_name": "y", "default_aggregation": {}}  # type: ignore[typeddict-item]
        )
    assert caught.value.code == "parameter_missing"


def test_request_log_records_every_api_request(url: str, client: stripe.StripeClient) -> None:
    client.v1.customers.create({"email": "a@example.com"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create({"bogus": "1"})  # type: ignore[typeddict-unknown-key]
    log = httpx.get(f"{url}/_emulator/requests").json()["requests"]
    assert [(e["method"], e["template"], e["code"]) for e in log] == [
        ("POST", "/v1/customers", None),
        ("POST", "/v1/customers", "parameter_unknown"),
    ]
    assert log[0]["params"] == {"email": "a@example.com"}
    assert "PythonBindings" in log[0]["user_agent"]
